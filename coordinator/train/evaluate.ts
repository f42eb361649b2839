// Periodic evaluation on the held-out split, on the coordinator's CPU (reference backend):
// mean masked loss over up to `samples` held-out rows, and for instruction datasets exact-match
// accuracy of greedy completions (dataset.evaluate). Small by design: it runs between steps.

import { createCpuBackend, type CpuBackend } from '../../shared/model/cpu-backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { Dataset } from '../../shared/data/index.ts';
import { buildMicroBatch } from '../../shared/data/index.ts';
import { EOS_ID, decode, encode } from '../../shared/tokenizer.ts';

export interface EvalOutcome {
  loss: number;
  accuracy: number | null;
  rows: number;
  pairs: number;
}

export class Evaluator {
  private backend: CpuBackend;

  constructor(
    private readonly model: ModelConfig,
    private readonly dataset: Dataset,
    private readonly samples: number,
  ) {
    this.backend = createCpuBackend(model);
  }

  /** Greedy completion of `prompt` (bytes), up to the row length, ended at EOS. */
  private async greedy(prompt: string): Promise<string> {
    const ids = encode(prompt);
    const maxLen = Math.min(this.dataset.T, this.model.contextLength);
    const out: number[] = [];
    while (ids.length < maxLen) {
      const T = ids.length;
      const inputs = Int32Array.from(ids);
      const r = await this.backend.forward({ B: 1, T, inputs, targets: new Int32Array(T), mask: new Uint8Array(T) });
      const V = this.model.vocabSize;
      let best = 0;
      for (let v = 1; v < V; v++) if (r.logits[(T - 1) * V + v] > r.logits[(T - 1) * V + best]) best = v;
      if (best === EOS_ID) break;
      ids.push(best);
      out.push(best);
    }
    return decode(out);
  }

  async run(params: Float32Array): Promise<EvalOutcome> {
    await this.backend.setParams(params);
    const held = this.dataset.heldOut;
    const rows = Math.min(this.samples, held.size);
    let lossSum = 0;
    let tokens = 0;
    const chunk = 8;
    for (let s = 0; s < rows; s += chunk) {
      const ids = Array.from({ length: Math.min(chunk, rows - s) }, (_, i) => s + i);
      const r = await this.backend.forward(buildMicroBatch(held, ids));
      lossSum += r.loss * r.tokens;
      tokens += r.tokens;
    }
    let accuracy: number | null = null;
    let pairs = 0;
    if (this.dataset.evaluate && held.pairs && held.pairs.length > 0) {
      const res = await this.dataset.evaluate((p) => this.greedy(p), { limit: this.samples });
      accuracy = res.accuracy;
      pairs = res.total;
    }
    return { loss: tokens > 0 ? lossSum / tokens : 0, accuracy, rows, pairs };
  }

  dispose(): void {
    this.backend.dispose();
  }
}
