// Gradient aggregation behind a small interface so robust variants (--aggregate trimmed-mean |
// centered-clip, hardening issue) can be added without touching the trainer.
//
// MeanAggregator: the token-weighted mean, streamed: each accepted result is folded into ONE
// float64 accumulator in place (acc += tokens * g) as it arrives; no list of gradient copies is
// kept. sum_k(n_k * mean_k) / sum_k(n_k) equals the mean over all tokens, so K workers equal one
// worker on the whole batch (up to float rounding, which the float64 accumulator keeps ~1e-7).

import { createRobustAggregator, type RobustOptions } from '../security/robust-aggregate.ts';

export interface Aggregator {
  readonly name: string;
  /** Start a step; clears the accumulator. */
  begin(step: number): void;
  /** Fold one accepted result in (the gradient of the mean loss over `tokens` positions). */
  add(grads: Float32Array, tokens: number, workerId: string): void;
  /** Results folded in this step. */
  readonly count: number;
  readonly tokens: number;
  /** Write the aggregate gradient into `out` (float32, parameter layout); returns total tokens. */
  finish(out: Float32Array): number;
  /** Drop one worker's results of this step (ban); only aggregators that keep per-result vectors can. */
  remove?(workerId: string): number;
}

export class MeanAggregator implements Aggregator {
  readonly name = 'mean';
  private acc: Float64Array;
  private n = 0;
  private tok = 0;

  constructor(readonly paramCount: number) {
    this.acc = new Float64Array(paramCount);
  }

  begin(_step: number): void {
    this.acc.fill(0);
    this.n = 0;
    this.tok = 0;
  }

  add(grads: Float32Array, tokens: number, _workerId: string): void {
    if (grads.length !== this.acc.length) throw new Error(`aggregate: gradient length ${grads.length} != ${this.acc.length} (validated earlier: bug)`);
    if (tokens <= 0) return; // a task with no masked-in position contributes nothing
    const acc = this.acc;
    for (let i = 0; i < acc.length; i++) acc[i] += tokens * grads[i];
    this.n++;
    this.tok += tokens;
  }

  get count(): number {
    return this.n;
  }
  get tokens(): number {
    return this.tok;
  }

  finish(out: Float32Array): number {
    const inv = this.tok > 0 ? 1 / this.tok : 0;
    const acc = this.acc;
    for (let i = 0; i < acc.length; i++) out[i] = acc[i] * inv;
    return this.tok;
  }
}

export function createAggregator(kind: string, paramCount: number, robust: Partial<RobustOptions> = {}): Aggregator {
  switch (kind) {
    case 'mean':
      return new MeanAggregator(paramCount);
    case 'trimmed-mean':
    case 'centered-clip':
      return createRobustAggregator(kind, paramCount, robust);
    default:
      throw new Error(`aggregate: unknown aggregator "${kind}" (config validation should have caught it)`);
  }
}
