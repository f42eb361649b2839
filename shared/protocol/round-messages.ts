// Message types of DiLoCo rounds (validators in round.ts): a leaf module, so messages.ts can name
// them without importing the validators (which import validate.ts, which imports messages.ts).

import type { CodecName, CodecParams, PackedVector } from '../diloco/codec.ts';

/** Most inner steps a round may ask for. */
export const MAX_INNER_STEPS = 10_000;

export interface InnerHyperWire {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  gradClip: number;
}

export interface RoundTaskMsg {
  taskId: string;
  round: number;
  /** The outer step this round ends with (== round: one outer step per round). */
  step: number;
  /** The published weights version to start from (the worker holds it from params/update). */
  version: number;
  /** Inner steps (micro-batches) of this worker's round. */
  H: number;
  /** Rows per inner step. */
  B: number;
  T: number;
  /** H * B rows, row-major. */
  inputs: Int32Array;
  targets: Int32Array;
  mask: Uint8Array;
  /** Masked-in positions of all H micro-batches: the delta must report exactly this. */
  tokens: number;
  /** Dataset ids of the H * B rows. */
  sampleIds: Uint32Array;
  /** Learning rate of each inner step (length H). */
  lrs: number[];
  hyper: InnerHyperWire;
  /** How to pack the delta. */
  compress: CodecName;
  codec: CodecParams;
  leaseMs: number;
  /**
   * Start this round with fresh AdamW moments and pack its delta without the error-feedback
   * residual (which the worker keeps for later rounds; absent: the worker keeps its moments when its
   * weights continue its last round and adds its residual). The coordinator asks for it on rounds it
   * samples for re-computation on its CPU (docs/diloco.md "Trust").
   */
  fresh?: boolean;
}

export interface DeltaMsg {
  taskId: string;
  round: number;
  version: number;
  /** Masked-in positions trained on (== the task's tokens). */
  tokens: number;
  /** Mean loss of the inner steps (each at the weights it started from). */
  loss: number;
  /** theta_start - theta_end, packed with the task's codec (plus the worker's error feedback). */
  delta: PackedVector;
  timings: { totalMs: number };
}

export interface UpdateMsg {
  round: number;
  /** Apply only on top of exactly this version. */
  fromVersion: number;
  version: number;
  step: number;
  update: PackedVector;
}
