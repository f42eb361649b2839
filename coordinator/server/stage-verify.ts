// Re-computation of a pipeline share (issue 12 "Security"), the assigner's side: what the
// coordinator relayed for a complete share (ShareRun) as the plain data a verification thread
// re-runs (coordinator/security/stage-recompute.ts, on the --verify-threads pool like a replica's
// check, off the event loop). A stage whose answer differs by more than the tolerance is named;
// the share is then refused and that worker judged like a replica whose re-computation disagreed
// (VERIFY_FAILED). --objective dpo: the head's re-computation gets the micro-batch's pairs
// (reference log-probs, beta) as the worker did, so it re-computes the DPO loss, its weighted
// backward and dIn; every stage's sum is weighted by pairs.

import { AppError } from '../../shared/errors.ts';
import type { ShareCheck } from '../security/stage-recompute.ts';
import type { ShareRun } from './pipeline-relay.ts';

export type { StageMismatch } from '../security/stage-recompute.ts';

/** The share's relayed data for its check (the arrays are copied when posted to the thread). */
export function shareCheckOf(share: ShareRun): ShareCheck {
  return {
    specs: share.tables.map((t) => ({ from: t.spec.from, to: t.spec.to })),
    micros: share.micros.map((m) => ({ batch: m.batch, tokens: m.tokens, ...(m.loss !== undefined ? { loss: m.loss } : {}), ...(m.dpo ? { dpo: m.dpo } : {}) })),
    inputs: share.inputs,
    dOuts: share.dOuts,
    grads: share.grads.map((g, s) => {
      if (!g) throw new AppError('ERR_VERIFY', `shareCheckOf: stage ${s} has no gradient sum (the share is not complete; bug)`, 500);
      return g.grads;
    }),
  };
}
