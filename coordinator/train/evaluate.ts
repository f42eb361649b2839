// Periodic evaluation on the held-out split, on the coordinator's CPU (reference backend):
// mean masked loss over up to `samples` held-out rows, and for instruction datasets exact-match
// accuracy of greedy completions (dataset.evaluate, KV-cache decoder). Small by design: it runs
// between steps, and yields to the event loop often so heartbeats and sockets stay served.

import { createCpuBackend, type CpuBackend } from '../../shared/model/cpu-backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { Dataset } from '../../shared/data/index.ts';
import { buildMicroBatch } from '../../shared/data/index.ts';
import { generateTokens } from '../../shared/model/generate.ts';
import { EOS_ID, decode, encode } from '../../shared/tokenizer.ts';

const yieldNow = () => new Promise<void>((r) => setImmediate(r));

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

  /**
   * Greedy completion of `prompt` with the KV-cache decoder, up to the row length, ended at EOS.
   * Yields to the event loop between tokens: evaluation must never starve heartbeats.
   */
  private async greedy(params: Float32Array, prompt: string): Promise<string> {
    const ids = encode(prompt);
    const maxTokens = Math.max(0, Math.min(this.dataset.T, this.model.contextLength) - ids.length);
    const it = generateTokens(this.model, params, ids, { maxTokens, eosId: EOS_ID, temperature: 0 });
    const out: number[] = [];
    for (;;) {
      const r = it.next();
      if (r.done) break;
      out.push(r.value);
      await yieldNow();
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
      await yieldNow();
    }
    let accuracy: number | null = null;
    let pairs = 0;
    if (this.dataset.evaluate && held.pairs && held.pairs.length > 0) {
      const frozen = new Float32Array(params); // training may move on while we decode
      const res = await this.dataset.evaluate((p) => this.greedy(frozen, p), { limit: this.samples });
      accuracy = res.accuracy;
      pairs = res.total;
    }
    return { loss: tokens > 0 ? lossSum / tokens : 0, accuracy, rows, pairs };
  }

  dispose(): void {
    this.backend.dispose();
  }
}
