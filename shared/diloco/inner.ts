// A worker's DiLoCo round: H inner AdamW steps from the round's start weights, one micro-batch
// each, then delta = theta_start - theta_end. runRound() is the one implementation of the round's
// arithmetic; the engine it drives decides where the steps run:
//   HostInnerEngine   any TrainingBackend for forward+backward (CPU reference, or a backend
//                     without on-device AdamW); clipping and AdamW on the host (shared/optim).
//                     With the CPU backend this is the CPU reference the coordinator's verifier
//                     and the tests use.
//   (worker-web)      the WebGPU engine: AdamW kernel with moments on the device.
// Each inner step: gradient of the micro-batch's mean masked loss, global-norm clip to gradClip
// (torch's clip / (norm + 1e-6) above the clip), AdamW at lrs[j] with decay on linear weights only.

import type { MicroBatch, TrainingBackend } from '../backend.ts';
import { AppError } from '../errors.ts';
import type { ParameterTable } from '../model/parameters.ts';
import { adamwStep, createAdamWState, decayMask, type AdamWState } from '../optim/adamw.ts';

export interface InnerHyper {
  /** Learning rate of each inner step (length H). */
  lrs: number[];
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global-norm clip per inner step; 0 = off. */
  gradClip: number;
}

export interface InnerStepResult {
  loss: number;
  tokens: number;
  gradNorm: number;
  nonFinite: number;
}

/** Where a round's inner steps run. */
export interface InnerEngine {
  /** Load the round's start weights (moments are kept: resetMoments() clears them). */
  setParams(p: Float32Array): Promise<void>;
  /** One inner step on `batch` at learning rate `lr`. */
  step(batch: MicroBatch, lr: number, h: InnerHyper): Promise<InnerStepResult>;
  /** The current weights. */
  getParams(): Promise<Float32Array>;
  /** Fresh AdamW moments (a new or returning worker, or weights that are not the continuation). */
  resetMoments(): void;
  /** Inner steps taken since the last resetMoments() (AdamW's t). */
  readonly momentSteps: number;
}

/** The clip factor of torch.nn.utils.clip_grad_norm_ (as shared/optim/clip.ts): clip / (norm + 1e-6) above the clip. */
export function clipScale(gradNorm: number, clip: number): number {
  return clip > 0 && Number.isFinite(gradNorm) && gradNorm > clip ? clip / (gradNorm + 1e-6) : 1;
}

/** Inner steps on the host: forward+backward on `backend`, clip + AdamW in JS (float32 state). */
export class HostInnerEngine implements InnerEngine {
  private params: Float32Array | null = null;
  private state: AdamWState;
  private readonly decay: Uint8Array;

  constructor(private readonly backend: TrainingBackend, table: ParameterTable) {
    this.state = createAdamWState(table.total);
    this.decay = decayMask(table);
  }

  get momentSteps(): number {
    return this.state.step;
  }

  /** The backend reads this.params itself (CpuBackend.adoptParams): no copy per inner step. */
  private adopted = false;

  async setParams(p: Float32Array): Promise<void> {
    this.params = new Float32Array(p);
    const b = this.backend as TrainingBackend & { adoptParams?: (x: Float32Array) => void };
    this.adopted = typeof b.adoptParams === 'function';
    if (this.adopted) b.adoptParams!(this.params);
    else await this.backend.setParams(this.params);
  }

  async step(batch: MicroBatch, lr: number, h: InnerHyper): Promise<InnerStepResult> {
    if (!this.params) throw new AppError('ERR_NO_PARAMS', 'inner engine: step() before setParams()', 500);
    const r = await this.backend.forwardBackward(batch);
    const s = clipScale(r.gradNorm, h.gradClip);
    const g = r.grads;
    if (s !== 1) for (let i = 0; i < g.length; i++) g[i] *= s;
    adamwStep(this.params, g, this.state, lr, h, this.decay);
    if (!this.adopted) await this.backend.setParams(this.params);
    return { loss: r.loss, tokens: r.tokens, gradNorm: r.gradNorm, nonFinite: r.nonFinite };
  }

  async getParams(): Promise<Float32Array> {
    if (!this.params) throw new AppError('ERR_NO_PARAMS', 'inner engine: getParams() before setParams()', 500);
    return new Float32Array(this.params);
  }

  resetMoments(): void {
    this.state = createAdamWState(this.state.m.length);
  }
}

export interface RoundData {
  /** Rows per inner step. */
  B: number;
  T: number;
  /** H * B rows. */
  inputs: Int32Array;
  targets: Int32Array;
  mask: Uint8Array;
}

export interface RoundResult {
  /** theta_start - theta_end (float32). */
  delta: Float32Array;
  end: Float32Array;
  /** Token-weighted mean loss over the inner steps (each at the weights it started from). */
  loss: number;
  tokens: number;
  /** Per inner step. */
  losses: number[];
  nonFinite: number;
}

/** Micro-batch j of a round (rows [jB, (j+1)B)), padded with masked-out rows to `padTo` rows. */
export function innerBatch(d: RoundData, j: number, padTo = d.B): MicroBatch {
  const lo = j * d.B * d.T;
  const hi = (j + 1) * d.B * d.T;
  if (padTo === d.B) return { B: d.B, T: d.T, inputs: d.inputs.subarray(lo, hi), targets: d.targets.subarray(lo, hi), mask: d.mask.subarray(lo, hi) };
  const n = padTo * d.T;
  const inputs = new Int32Array(n);
  const targets = new Int32Array(n);
  const mask = new Uint8Array(n);
  inputs.set(d.inputs.subarray(lo, hi));
  targets.set(d.targets.subarray(lo, hi));
  mask.set(d.mask.subarray(lo, hi));
  return { B: padTo, T: d.T, inputs, targets, mask };
}

/**
 * H = hyper.lrs.length inner steps from `start` on `engine`. `between` runs after each step (the
 * worker yields to its event loop there, for heartbeats).
 */
export async function runRound(engine: InnerEngine, start: Float32Array, d: RoundData, h: InnerHyper,
  opts: { padTo?: number; between?: (j: number) => Promise<void> | void } = {}): Promise<RoundResult> {
  const H = h.lrs.length;
  if (d.inputs.length !== H * d.B * d.T || d.targets.length !== d.inputs.length || d.mask.length !== d.inputs.length) {
    throw new AppError('ERR_ROUND_SHAPE', `round: ${d.inputs.length} positions for H=${H} x B=${d.B} x T=${d.T}`, 400);
  }
  await engine.setParams(start);
  const losses: number[] = [];
  let lossSum = 0;
  let tokens = 0;
  let nonFinite = 0;
  for (let j = 0; j < H; j++) {
    const r = await engine.step(innerBatch(d, j, opts.padTo ?? d.B), h.lrs[j], h);
    losses.push(r.loss);
    lossSum += r.loss * r.tokens;
    tokens += r.tokens;
    nonFinite += r.nonFinite;
    await opts.between?.(j);
  }
  const end = await engine.getParams();
  const delta = new Float32Array(start.length);
  for (let i = 0; i < delta.length; i++) delta[i] = start[i] - end[i];
  return { delta, end, loss: tokens > 0 ? lossSum / tokens : 0, tokens, losses, nonFinite };
}
