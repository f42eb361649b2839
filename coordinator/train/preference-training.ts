// --objective dpo (docs/dpo.md): what the trainer needs to turn leases of pair ids into tasks:
// the preference dataset, the frozen reference's sequence log-probs of every pair (computed once
// at start, reference.ts) and beta. A lease of P pairs becomes 2P rows (chosen, rejected, ...)
// plus `dpo: { beta, refLogProbs }`; results are weighted by P.

import type { MicroBatch } from '../../shared/backend.ts';
import type { PreferenceDataset } from '../../shared/data/preference-data.ts';
import type { TaskDpo } from '../../shared/protocol/messages.ts';
import type { ReferenceLogProbs } from './reference.ts';

export class PreferenceTraining {
  constructor(
    readonly dataset: PreferenceDataset,
    readonly reference: ReferenceLogProbs,
    readonly beta: number,
  ) {}

  /** Pairs `ids` of the train split as a task batch; `tokens` = pairs. */
  batchOf(ids: ArrayLike<number>): { batch: MicroBatch & { dpo: TaskDpo }; tokens: number } {
    const batch = this.dataset.pairBatch(ids, 'train');
    const refLogProbs = new Float32Array(2 * ids.length);
    for (let i = 0; i < ids.length; i++) {
      refLogProbs[2 * i] = this.reference.train[2 * ids[i]];
      refLogProbs[2 * i + 1] = this.reference.train[2 * ids[i] + 1];
    }
    return { batch: { ...batch, dpo: { beta: this.beta, refLogProbs } }, tokens: ids.length };
  }
}
