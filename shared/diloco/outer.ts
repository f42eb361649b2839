// The DiLoCo outer optimizer (Douillard et al. 2023), on the coordinator's CPU: the token-weighted
// mean of the workers' pseudo-gradients (delta = theta_start - theta_end), accumulated in float64,
// then SGD with Nesterov momentum (PyTorch semantics):
//   buf <- mu * buf + g;   theta <- theta - lr * (g + mu * buf)
// With lr 1 and mu 0 this is theta - mean(delta) = the token-weighted mean of the workers' end
// weights: plain averaging of their local updates (the identity tests/shared/diloco pin).

import { AppError } from '../errors.ts';

export interface WeightedDelta {
  delta: Float32Array;
  /** Tokens the delta was trained on (its weight in the mean). */
  tokens: number;
}

/** Token-weighted mean of deltas, float64. Throws ERR_OUTER_INPUT on no tokens or mismatched lengths. */
export function weightedMean(deltas: readonly WeightedDelta[], n: number, out = new Float64Array(n)): Float64Array {
  return weightedMeanOf(deltas.length, (k) => deltas[k].tokens, (k) => deltas[k].delta, n, out);
}

/**
 * weightedMean over `count` deltas read one at a time: `deltaOf(k)` is called once per delta, in
 * order, after every weight is known (the caller may decode each packed delta into one scratch
 * buffer: a round keeps its deltas packed until its close, round-trainer.ts). The same float64
 * operations in the same order as weightedMean.
 */
export function weightedMeanOf(count: number, tokensOf: (k: number) => number, deltaOf: (k: number) => Float32Array, n: number, out = new Float64Array(n)): Float64Array {
  let total = 0;
  for (let k = 0; k < count; k++) {
    const t = tokensOf(k);
    if (!(t >= 0 && Number.isFinite(t))) throw new AppError('ERR_OUTER_INPUT', `outer step: token weight ${t} is invalid`, 400);
    total += t;
  }
  if (!(total > 0)) throw new AppError('ERR_OUTER_INPUT', 'outer step: the deltas carry no tokens', 400);
  out.fill(0);
  for (let k = 0; k < count; k++) {
    const x = deltaOf(k);
    if (x.length !== n) throw new AppError('ERR_OUTER_INPUT', `outer step: a delta has ${x.length} values, the model has ${n}`, 400);
    const w = tokensOf(k) / total;
    for (let i = 0; i < n; i++) out[i] += w * x[i];
  }
  return out;
}

export interface OuterHyper {
  lr: number;
  momentum: number;
}

export class OuterNesterov {
  /** Momentum buffer (checkpointed). */
  buf: Float32Array;

  constructor(readonly n: number) {
    this.buf = new Float32Array(n);
  }

  /** theta <- theta - lr * (g + mu * buf'), buf' = mu * buf + g; in place on params and buf. */
  step(params: Float32Array, g: Float64Array | Float32Array, h: OuterHyper): void {
    if (params.length !== this.n || g.length !== this.n) {
      throw new AppError('ERR_OUTER_INPUT', `outer step: params ${params.length}, update ${g.length}, optimizer ${this.n} values`, 400);
    }
    if (!(h.lr >= 0 && Number.isFinite(h.lr)) || !(h.momentum >= 0 && h.momentum < 1)) {
      throw new AppError('ERR_OUTER_INPUT', `outer step: lr ${h.lr} must be finite >= 0 and momentum ${h.momentum} in [0, 1)`, 400);
    }
    const { lr, momentum: mu } = h;
    const b = this.buf;
    for (let i = 0; i < this.n; i++) {
      const gi = g[i];
      const bi = mu * b[i] + gi;
      b[i] = bi;
      params[i] = params[i] - lr * (gi + mu * bi);
    }
  }

  load(buf: Float32Array): void {
    if (buf.length !== this.n) throw new AppError('ERR_OUTER_INPUT', `outer momentum of ${buf.length} values, the model has ${this.n}`, 400);
    this.buf = new Float32Array(buf);
  }
}
