// TrainingBackend on the CPU reference (shared/model/cpu/gpt.ts): the ground truth the WebGPU
// engine is compared with, and what the coordinator uses to re-check workers' results.

import type { ForwardResult, GradientResult, MicroBatch, TrainingBackend } from '../backend.ts';
import { AppError } from '../errors.ts';
import { validateModelConfig, type ModelConfig } from './config.ts';
import { CpuGpt } from './cpu/gpt.ts';

/** L2 norm (float64 accumulation) and NaN/Inf count of a gradient vector, in one pass. */
export function gradStats(grads: Float32Array): { gradNorm: number; nonFinite: number } {
  let ss = 0;
  let nonFinite = 0;
  for (let i = 0; i < grads.length; i++) {
    const g = grads[i];
    if (Number.isFinite(g)) ss += g * g;
    else nonFinite++;
  }
  return { gradNorm: Math.sqrt(ss), nonFinite };
}

export class CpuBackend implements TrainingBackend {
  readonly name = 'cpu' as const;
  private readonly model: CpuGpt;
  private params: Float32Array | null = null;
  private disposed = false;

  constructor(readonly config: ModelConfig) {
    validateModelConfig(config);
    this.model = new CpuGpt(config, Float32Array);
  }

  private ready(where: string): Float32Array {
    if (this.disposed) throw new AppError('ERR_BACKEND_DISPOSED', `cpu backend: ${where} after dispose()`, 500);
    if (!this.params) {
      throw new AppError('ERR_NO_PARAMS', `cpu backend: ${where} before setParams()`, 500, 'call setParams(params) first');
    }
    return this.params;
  }

  async setParams(params: Float32Array): Promise<void> {
    if (this.disposed) throw new AppError('ERR_BACKEND_DISPOSED', 'cpu backend: setParams() after dispose()', 500);
    const n = this.model.table.total;
    if (!(params instanceof Float32Array) || params.length !== n) {
      throw new AppError('ERR_PARAM_SIZE', `cpu backend: setParams got ${params?.length} values, the model needs ${n}`,
        400, 'pass a Float32Array laid out as buildParameterTable(config)');
    }
    // Own copy: the caller (the coordinator's optimizer) keeps updating its vector in place.
    this.params = new Float32Array(params);
  }

  /**
   * Uses `params` itself, no copy: for a caller that changes it only between calls and wants every
   * change seen (HostInnerEngine's AdamW updates its weights in place after each step; a copy per
   * inner step was 4 bytes per parameter allocated and copied every step, issue 13).
   */
  adoptParams(params: Float32Array): void {
    if (this.disposed) throw new AppError('ERR_BACKEND_DISPOSED', 'cpu backend: adoptParams() after dispose()', 500);
    const n = this.model.table.total;
    if (!(params instanceof Float32Array) || params.length !== n) {
      throw new AppError('ERR_PARAM_SIZE', `cpu backend: adoptParams got ${params?.length} values, the model needs ${n}`, 400);
    }
    this.params = params;
  }

  async forward(batch: MicroBatch): Promise<ForwardResult> {
    const params = this.ready('forward()');
    const { loss, tokens } = this.model.forward(params, batch);
    return { logits: new Float32Array(this.model.logits()), loss, tokens };
  }

  async forwardBackward(batch: MicroBatch): Promise<GradientResult> {
    const params = this.ready('forwardBackward()');
    const t0 = performance.now();
    const { loss, tokens } = this.model.forward(params, batch);
    const t1 = performance.now();
    const grads = new Float32Array(this.model.table.total);
    this.model.backward(grads);
    const t2 = performance.now();
    const { gradNorm, nonFinite } = gradStats(grads);
    return {
      loss, tokens, grads, gradNorm, nonFinite,
      timings: { totalMs: t2 - t0, forwardMs: t1 - t0, backwardMs: t2 - t1, uploadMs: 0, readbackMs: 0 },
    };
  }

  async sequenceLogProbs(batch: MicroBatch): Promise<Float64Array> {
    const params = this.ready('sequenceLogProbs()');
    this.model.forward(params, batch);
    return this.model.sequenceLogProbs();
  }

  async forwardBackwardWeighted(batch: MicroBatch, rowWeights: Float32Array): Promise<GradientResult> {
    const params = this.ready('forwardBackwardWeighted()');
    const t0 = performance.now();
    const { tokens } = this.model.forward(params, batch);
    const seq = this.model.sequenceLogProbs();
    const t1 = performance.now();
    const grads = new Float32Array(this.model.table.total);
    this.model.backwardWeighted(grads, rowWeights);
    const t2 = performance.now();
    let loss = 0;
    for (let b = 0; b < batch.B; b++) loss -= rowWeights[b] * seq[b];
    const { gradNorm, nonFinite } = gradStats(grads);
    return {
      loss, tokens, grads, gradNorm, nonFinite,
      timings: { totalMs: t2 - t0, forwardMs: t1 - t0, backwardMs: t2 - t1, uploadMs: 0, readbackMs: 0 },
    };
  }

  dispose(): void {
    this.disposed = true;
    this.params = null;
  }
}

export function createCpuBackend(config: ModelConfig): CpuBackend {
  return new CpuBackend(config);
}
