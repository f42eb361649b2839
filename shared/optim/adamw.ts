// AdamW (Loshchilov & Hutter; PyTorch torch.optim.AdamW semantics) on the flat parameter vector:
//   p <- p - lr * wd * p                        (decoupled weight decay, only where decayMask is 1)
//   m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// State is plain Float32Arrays + a step number so the coordinator can checkpoint it as is.
// The update is in place and one pass over the vector.

import { AppError } from '../errors.ts';
import type { ParameterTable } from '../model/parameters.ts';
import { KERNEL_MIN_VALUES, scratchKernelsHere, type AdamWConstants } from '../simd/gradient-kernels.ts';

export interface AdamWHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Also decay wte/wpe (GPT-2 practice differs; default false). Biases and LayerNorm never decay. */
  decayEmbeddings?: boolean;
}

export const DEFAULT_ADAMW: Required<AdamWHyper> = {
  beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, decayEmbeddings: false,
};

export interface AdamWState {
  /** First moment, parameter-table layout. */
  m: Float32Array;
  /** Second moment. */
  v: Float32Array;
  /** Number of updates applied so far (t of the bias correction is step + 1 on the next update). */
  step: number;
}

export function createAdamWState(n: number): AdamWState {
  return { m: new Float32Array(n), v: new Float32Array(n), step: 0 };
}

/** 1 where weight decay applies: linear weights, plus embeddings when decayEmbeddings. */
export function decayMask(table: ParameterTable, decayEmbeddings = false): Uint8Array {
  const mask = new Uint8Array(table.total);
  for (const t of table.tensors) {
    if (t.kind === 'weight' || (decayEmbeddings && t.kind === 'embedding')) mask.fill(1, t.offset, t.offset + t.size);
  }
  return mask;
}

function checkHyper(h: AdamWHyper, lr: number): void {
  const bad = (name: string, v: number, want: string) => {
    throw new AppError('ERR_OPTIM_CONFIG', `adamw: ${name} = ${v} is invalid, expected ${want}`);
  };
  if (!(lr >= 0 && Number.isFinite(lr))) bad('lr', lr, 'a finite number >= 0');
  if (!(h.beta1 >= 0 && h.beta1 < 1)) bad('beta1', h.beta1, 'a number in [0, 1)');
  if (!(h.beta2 >= 0 && h.beta2 < 1)) bad('beta2', h.beta2, 'a number in [0, 1)');
  if (!(h.eps > 0)) bad('eps', h.eps, 'a number > 0');
  if (!(h.weightDecay >= 0 && Number.isFinite(h.weightDecay))) bad('weightDecay', h.weightDecay, 'a finite number >= 0');
}

/**
 * One AdamW update, in place on params and state. grads is not modified. decay is a mask from
 * decayMask(); pass null to decay nothing. Throws (changing nothing) on mismatched sizes or bad
 * hyperparameters.
 */
export function adamwStep(
  params: Float32Array, grads: Float32Array, state: AdamWState, lr: number, hyper: AdamWHyper,
  decay: Uint8Array | null,
): void {
  const n = params.length;
  for (const [name, len] of [['grads', grads.length], ['state.m', state.m.length], ['state.v', state.v.length],
    ['decay mask', decay ? decay.length : n]] as const) {
    if (len !== n) {
      throw new AppError('ERR_OPTIM_SIZE', `adamw: ${name} has ${len} values, params has ${n}`, 400,
        'build the optimizer state for this model (createAdamWState(table.total))');
    }
  }
  checkHyper(hyper, lr);
  const t = state.step + 1;
  const c = adamwConstants(hyper, lr, t);
  const { m, v } = state;
  // The SIMD kernel (the same float64 operations in the same order: the same bits) where this
  // runtime has it. The loop alone took ~1-2.4 s per GPT-2-small step in the coordinator's event
  // loop (bench:optimizer; the GPT-2 load test's profile, docs/scale.md "Fourth pass"). The loop
  // does the tail, or everything without the kernels.
  const k = n >= KERNEL_MIN_VALUES ? scratchKernelsHere() : null;
  const start = k ? k.adamw(params, grads, m, v, decay, c) : 0;
  adamwRange(params, grads, m, v, decay, c, start, n);
  state.step = t;
}

/** The constants of update number `t` (1 for the first): bias corrections folded into two factors. */
export function adamwConstants(hyper: AdamWHyper, lr: number, t: number): AdamWConstants {
  const { beta1: b1, beta2: b2, eps, weightDecay: wd } = hyper;
  const bc1 = 1 - Math.pow(b1, t);
  const bc2 = 1 - Math.pow(b2, t);
  return { b1, b2, eps, stepSize: lr / bc1, invSqrtBc2: 1 / Math.sqrt(bc2), decayFactor: 1 - lr * wd };
}

/**
 * The update of values [from, to): the reference loop (in float64, stored as float32) that the
 * SIMD kernel (shared/simd, adamw) reproduces bit for bit.
 */
export function adamwRange(
  params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, decay: Uint8Array | null, c: AdamWConstants, from: number, to: number,
): void {
  const { b1, b2, eps, stepSize, invSqrtBc2, decayFactor } = c;
  for (let i = from; i < to; i++) {
    const g = grads[i];
    const mi = b1 * m[i] + (1 - b1) * g;
    const vi = b2 * v[i] + (1 - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let p = params[i];
    if (decay !== null && decay[i]) p *= decayFactor;
    params[i] = p - (stepSize * mi) / (Math.sqrt(vi) * invSqrtBc2 + eps);
  }
}

/** Class form holding the table's decay mask and hyperparameters. */
export class AdamW {
  readonly hyper: Required<AdamWHyper>;
  readonly decay: Uint8Array;
  state: AdamWState;

  constructor(table: ParameterTable, hyper: Partial<AdamWHyper> = {}) {
    this.hyper = { ...DEFAULT_ADAMW, ...hyper };
    checkHyper(this.hyper, 0);
    this.decay = decayMask(table, this.hyper.decayEmbeddings);
    this.state = createAdamWState(table.total);
  }

  step(params: Float32Array, grads: Float32Array, lr: number): void {
    adamwStep(params, grads, this.state, lr, this.hyper, this.decay);
  }

  /** Restore a checkpointed state (copied; sizes checked). */
  loadState(s: AdamWState): void {
    const n = this.state.m.length;
    if (s.m.length !== n || s.v.length !== n || !Number.isInteger(s.step) || s.step < 0) {
      throw new AppError('ERR_OPTIM_SIZE', `adamw: checkpoint state has m ${s.m.length}, v ${s.v.length}, step ${s.step}; expected ${n} values and step >= 0`,
        400, 'the checkpoint was written for another model config');
    }
    this.state = { m: new Float32Array(s.m), v: new Float32Array(s.v), step: s.step };
  }
}
