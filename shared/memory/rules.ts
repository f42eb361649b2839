// The memory rules in one place: bytes per parameter by precision and mode, and the model's
// parameter groups (embeddings, blocks, head) that plans split into stages.

import { parameterCount, type ModelConfig } from '../model/config.ts';

export type Precision = 'fp32' | 'fp16' | 'bf16' | 'int8';
export type Mode = 'train' | 'infer';

/** Bytes per stored weight value. */
export const BYTES_PER_VALUE: Record<Precision, number> = { fp32: 4, fp16: 2, bf16: 2, int8: 1 };

/**
 * Training, per parameter (fp32 everywhere, as our WebGPU engine and the coordinator's AdamW run):
 * weights 4 + gradients 4 + Adam m and v 8 + activations/workspace 4 = 20 bytes.
 */
export const TRAIN_BYTES = { weights: 4, gradients: 4, optimizer: 8, activations: 4 } as const;
export const TRAIN_BYTES_PER_PARAM = 20;
/** What training needs per parameter besides activations: weights + gradients + Adam moments. */
export const TRAIN_STATE_BYTES_PER_PARAM = 16;

export interface Breakdown {
  weights: number;
  gradients: number;
  optimizer: number;
  activations: number;
}

export function breakdownTotal(b: Breakdown): number {
  return b.weights + b.gradients + b.optimizer + b.activations;
}

/** The flat rule for `params` parameters. Inference: weights only (KV cache comes from the explicit estimate). */
export function ruleBreakdown(params: number, mode: Mode, precision: Precision = 'fp32'): Breakdown {
  if (mode === 'train') {
    return {
      weights: TRAIN_BYTES.weights * params,
      gradients: TRAIN_BYTES.gradients * params,
      optimizer: TRAIN_BYTES.optimizer * params,
      activations: TRAIN_BYTES.activations * params,
    };
  }
  return { weights: BYTES_PER_VALUE[precision] * params, gradients: 0, optimizer: 0, activations: 0 };
}

export function bytesPerParam(mode: Mode, precision: Precision): number {
  return mode === 'train' ? TRAIN_BYTES_PER_PARAM : BYTES_PER_VALUE[precision];
}

/** Parameters of one transformer block: 12*C^2 + 13*C. */
export function blockParams(c: ModelConfig): number {
  return 12 * c.nEmbd * c.nEmbd + 13 * c.nEmbd;
}

/** wte + wpe: V*C + T*C (wte doubles as the tied LM head). */
export function embeddingParams(c: ModelConfig): number {
  return c.vocabSize * c.nEmbd + c.contextLength * c.nEmbd;
}

/** ln_f: 2*C. */
export function finalNormParams(c: ModelConfig): number {
  return 2 * c.nEmbd;
}

export function modelParams(c: ModelConfig): number {
  return parameterCount(c);
}
