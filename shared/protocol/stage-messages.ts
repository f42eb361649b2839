// Message types of pipeline stages (validators in stage.ts; docs/pipeline.md, docs/protocol.md
// "Pipeline stages"): a leaf module, so messages.ts can name them without importing the validators.
//
// A stage worker (plan role 'stage') gets, per pipeline share (a lease of some of the step's
// samples, cut into micro-batches):
//   stage  which blocks it runs in which pipeline, how many micro-batches the share has, the wire
//          dtype of activations, and its parameter slice when it does not hold this version yet
//   hop    one micro-batch: 'fwd' with its stage input (token ids for the first stage, the previous
//          stage's output otherwise; targets + mask for the head), or 'bwd' with the gradient of
//          the micro-batch's loss w.r.t. its output (it recomputes its forward from the input it
//          kept: re-materialisation)
// and answers with `stageOut` messages:
//   fwd    its output activations (non-head stages)
//   bwd    dIn, the gradient w.r.t. its input (absent for the first stage); the head also reports
//          the micro-batch's loss and tokens (the head runs forward+backward at once on 'fwd')
//   grad   after the share's last micro-batch: sum over micro-batches of tokens_m x its stage
//          gradient (stage-table layout), and sum tokens_m
// Activations travel as PackedActivations (fp32 / fp16 / int8 with per-row scales).

import type { ActivationDtype, PackedActivations } from '../pipeline/activation-codec.ts';

/** Most micro-batches one share may have. */
export const MAX_MICROS = 4096;

export interface StageTaskMsg {
  /** The pipeline's share of the step (a lease id); hops and the gradient name it. */
  taskId: string;
  pipelineId: string;
  step: number;
  /** Parameter version the share computes at. */
  version: number;
  /** Blocks [from, to) of this stage. */
  layers: [number, number];
  /** Position of this stage in the pipeline, and the pipeline's length. */
  index: number;
  stages: number;
  /** Micro-batches in this share: the gradient is uploaded after the last one. */
  micros: number;
  /** Wire dtype of the activations this worker sends. */
  dtype: ActivationDtype;
  /** The stage's parameters at `version` (stage-table layout); absent when the worker holds them. */
  params?: Float32Array;
  leaseMs: number;
  /**
   * Every micro-batch of the share has this shape (the coordinator pads the last one with mask-0
   * rows), so a fixed-shape engine compiles it on this message, before the first hop.
   */
  microBatch?: number;
  seqLen?: number;
  /** --objective dpo: the head's hops carry pairs (HopMsg.dpo); it compiles the DPO kernels too. */
  dpo?: true;
}

export interface HopMsg {
  taskId: string;
  /** Micro-batch index within the share, 0..micros-1. */
  micro: number;
  kind: 'fwd' | 'bwd';
  B: number;
  T: number;
  /**
   * Masked-in positions of this micro-batch (each stage weights its gradient by it); with
   * --objective dpo its PAIRS (the share's result is weighted by pairs, as a replica's).
   */
  tokens: number;
  /** fwd, first stage: token ids [B*T]. */
  inputs?: Int32Array;
  /** fwd, other stages: the previous stage's output [B*T, C]. */
  acts?: PackedActivations;
  /** fwd, head stage: next-token targets and loss mask [B*T]. */
  targets?: Int32Array;
  mask?: Uint8Array;
  /**
   * fwd, head stage, --objective dpo: rows 2i, 2i+1 are pair i (chosen, rejected) for i <
   * refLogProbs.length / 2 (the rest padding); the head computes their DPO loss (docs/dpo.md).
   */
  dpo?: { beta: number; refLogProbs: Float32Array };
  /** bwd: d(loss of the micro-batch)/d(this stage's output) [B*T, C]. */
  grad?: PackedActivations;
}

export type StageOutMsg = StageFwdMsg | StageBwdMsg | StageGradMsg;

export interface StageFwdMsg {
  kind: 'fwd';
  taskId: string;
  micro: number;
  acts: PackedActivations;
  /** Compute time of this hop, ms (the bubble figure). */
  ms: number;
}

export interface StageBwdMsg {
  kind: 'bwd';
  taskId: string;
  micro: number;
  /** Absent for the first stage. */
  dIn?: PackedActivations;
  /** Head stage: the micro-batch's mean masked loss and its tokens (dpo: mean DPO loss and pairs). */
  loss?: number;
  tokens?: number;
  ms: number;
}

export interface StageGradMsg {
  kind: 'grad';
  taskId: string;
  version: number;
  /** Sum of the micro-batches' tokens. */
  tokens: number;
  /** sum_m tokens_m x d(mean loss_m)/d(stage params), stage-table layout. */
  grads: Float32Array;
  nonFinite: number;
}
