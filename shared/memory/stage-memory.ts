// The memory and work of ONE pipeline stage (issue 12), the model that the live coordinator's
// pipeline formation (pipeline-plan.ts), planWorker's 'stage' role and `npm run simulate` share.
//
// A stage is blocks [from, to); the first also holds wte + wpe (embeddings), the last ln_f and the
// LM head, which GPT-2 ties to wte: so wte is held, trained and counted on BOTH ends.
// Bytes = 20 B/param x the stage's params (the team's rule: weights, gradients, Adam m and v, and
// its 4 B/param reserve) + the explicit activations of ONE micro-batch's forward+backward of its
// blocks (the schedule re-materialises: nothing is saved between a micro-batch's forward hop and
// its backward hop, only the stage input) + the stage inputs it keeps for `inFlight` micro-batches
// + its boundary buffers (output and incoming gradient, outgoing input gradient).
// Work per token: a non-head stage runs its forward twice (forward hop, then the recompute inside
// forwardBackward) and the backward once: 8 x params FLOPs; the head stage runs forwardBackward at
// once: 6 x params (the embedding lookup is a gather and is not counted).

import type { ModelConfig } from '../model/config.ts';
import { largestActivationBuffer, layerActivationBytes, logitsBytes } from './activations.ts';
import { blockParams, embeddingParams, finalNormParams, modelParams, TRAIN_BYTES_PER_PARAM, type Breakdown } from './rules.ts';

/** A stage's place in the model: blocks [from, to), and which ends it holds. */
export interface StageShape {
  from: number;
  to: number;
  embeddings: boolean;
  head: boolean;
}

/** The stage of blocks [from, to) in a model of `c.nLayer` blocks: embeddings iff from = 0, head iff to = nLayer. */
export function stageShape(c: ModelConfig, from: number, to: number): StageShape {
  return { from, to, embeddings: from === 0, head: to === c.nLayer };
}

/** wte (the tied LM head) + ln_f. */
export function headParams(c: ModelConfig): number {
  return c.vocabSize * c.nEmbd + finalNormParams(c);
}

/** Parameters a stage holds (wte counted on each end that holds it; once when one stage is both ends). */
export function stageParams(c: ModelConfig, s: StageShape): number {
  const head = s.head ? (s.embeddings ? finalNormParams(c) : headParams(c)) : 0;
  return (s.to - s.from) * blockParams(c) + (s.embeddings ? embeddingParams(c) : 0) + head;
}

/** Parameters of a whole pipeline: the model plus a second wte when the first and last stage differ. */
export function pipelineParams(c: ModelConfig, stages: number): number {
  return modelParams(c) + (stages > 1 ? c.vocabSize * c.nEmbd : 0);
}

export interface StageActivations {
  /** One micro-batch's forward+backward of its blocks (Korthikanti et al., x2 for fp32). */
  blocks: number;
  /** Embedding output (first stage), ln_f output + logits and probs (last stage). */
  ends: number;
  /** Stage inputs kept for `inFlight` micro-batches: tokens (int32) for the first stage, [b, s, C] fp32 otherwise. */
  inputs: number;
  /** Output and incoming gradient (non-head), outgoing input gradient (non-first), one micro-batch each. */
  boundary: number;
  total: number;
}

export function stageActivations(c: ModelConfig, s: StageShape, b: number, seq: number, inFlight: number): StageActivations {
  const row = b * seq * c.nEmbd * 4;
  const blocks = (s.to - s.from) * layerActivationBytes(c, b, seq);
  const ends = (s.embeddings ? row : 0) + (s.head ? row + logitsBytes(c, b, seq) : 0);
  const inputs = inFlight * (s.embeddings ? b * seq * 4 : row);
  const boundary = ((s.head ? 0 : 2) + (s.embeddings ? 0 : 1)) * row;
  return { blocks, ends, inputs, boundary, total: blocks + ends + inputs + boundary };
}

/** The 20 B/param bytes of a stage's parameters. */
export function stageParamBytes(c: ModelConfig, s: StageShape): number {
  return TRAIN_BYTES_PER_PARAM * stageParams(c, s);
}

/** Everything a stage needs: 20 B/param + activations of one micro-batch + inputs for inFlight + boundary buffers. */
export function stageBytes(c: ModelConfig, s: StageShape, b: number, seq: number, inFlight: number): number {
  return stageParamBytes(c, s) + stageActivations(c, s, b, seq, inFlight).total;
}

/** The bars a dashboard draws: weights 4, gradients 4, Adam 8 B/param; activations = the rule's 4 B/param + the explicit ones. */
export function stageBreakdown(c: ModelConfig, s: StageShape, b: number, seq: number, inFlight: number): Breakdown {
  const p = stageParams(c, s);
  return { weights: 4 * p, gradients: 4 * p, optimizer: 8 * p, activations: 4 * p + stageActivations(c, s, b, seq, inFlight).total };
}

/** FLOPs per token of a stage under the recompute schedule (8 x params, the head stage 6 x params; see the header). */
export function stageFlopsPerToken(c: ModelConfig, s: StageShape): number {
  const matmul = (s.to - s.from) * blockParams(c) + (s.head ? headParams(c) : 0);
  return (s.head ? 6 : 8) * matmul;
}

/**
 * A stage's measured tokens/s converted to what the same worker would do on the whole model
 * (6 x params FLOPs per token): the speed formPipelines balances with. A stage that holds less
 * work runs more tokens/s; this puts every worker on one scale.
 */
export function wholeModelTokensPerSec(c: ModelConfig, s: StageShape, stageTokensPerSec: number): number {
  return (stageTokensPerSec * stageFlopsPerToken(c, s)) / (6 * modelParams(c));
}

/** Adapter limits a stage must respect (absent: a CPU worker, no per-buffer limits on parameters). */
export interface StageLimits {
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
}

/** WebGPU aligns each tensor's start to minStorageBufferOffsetAlignment (<= 256 B): the padding the engine adds. */
const ALIGN_BYTES = 256;

/**
 * Why a stage cannot run on a device with these limits, or undefined if it can. The engine keeps a
 * stage's parameters in one buffer (each tensor aligned) and binds each tensor and each activation
 * buffer whole, so: parameter buffer <= maxBufferSize, every tensor (wte: V x C) and every
 * activation buffer (attention scores, MLP hidden, the head's logits) <= the binding limit.
 * Activation buffers are checked with the WebGPU defaults when the limits are unknown (as
 * planWorker does); the parameter buffer only when maxBufferSize was reported.
 */
export function stageLimitProblem(c: ModelConfig, s: StageShape, b: number, seq: number, lim: StageLimits, defaults: Required<StageLimits>): string | undefined {
  const maxBuf = lim.maxBufferSize ?? defaults.maxBufferSize;
  const bind = Math.min(lim.maxStorageBufferBindingSize ?? defaults.maxStorageBufferBindingSize, maxBuf);
  const act = largestActivationBuffer(c, b, seq, s.head);
  if (act.bytes > bind) return `activation ${act.name} (${act.bytes} bytes for ${b} x ${seq}) exceeds the binding limit ${bind}`;
  if (lim.maxBufferSize === undefined) return undefined;
  const tensors = (s.to - s.from) * 12 + (s.embeddings ? 2 : 0) + (s.head ? (s.embeddings ? 2 : 3) : 0);
  const paramBuffer = 4 * stageParams(c, s) + ALIGN_BYTES * tensors;
  if (paramBuffer > lim.maxBufferSize) return `its parameter buffer (${paramBuffer} bytes) exceeds maxBufferSize ${lim.maxBufferSize}`;
  const wte = 4 * c.vocabSize * c.nEmbd;
  if ((s.embeddings || s.head) && wte > bind) return `wte (${wte} bytes) exceeds the binding limit ${bind}`;
  const mlp = 4 * 4 * c.nEmbd * c.nEmbd;
  if (s.to > s.from && mlp > bind) return `a block's MLP weight (${mlp} bytes) exceeds the binding limit ${bind}`;
  return undefined;
}
