// The training backend interface every worker uses (CPU reference and WebGPU engine alike).
// A micro-batch is B sequences of T positions; the loss is the mean cross-entropy over the
// positions whose mask is 1, and the gradient is of that mean (the coordinator weights each
// result by its token count, so K workers equal one worker on the whole batch).

import type { ModelConfig } from './model/config.ts';

export interface MicroBatch {
  /** Sequences in this micro-batch. */
  B: number;
  /** Positions per sequence (<= contextLength). */
  T: number;
  /** Input token ids, B*T, row-major [b][t]. */
  inputs: Int32Array;
  /** Next-token targets, B*T. */
  targets: Int32Array;
  /** 1 where the position's loss counts (e.g. response tokens), 0 elsewhere (prompt, padding). */
  mask: Uint8Array;
}

export interface StepTimings {
  /** Wall time of the whole forward+backward, ms. */
  totalMs: number;
  forwardMs?: number;
  backwardMs?: number;
  uploadMs?: number;
  readbackMs?: number;
}

export interface GradientResult {
  /** Mean cross-entropy over masked-in positions (0 if none). */
  loss: number;
  /** Number of masked-in positions the loss averages over. */
  tokens: number;
  /** d(loss)/d(params), in the parameter table's flat layout. */
  grads: Float32Array;
  /** L2 norm of grads (computed by the backend, on the GPU for webgpu). */
  gradNorm: number;
  /** Count of NaN/Inf values in grads (bit-pattern test on the GPU). */
  nonFinite: number;
  timings: StepTimings;
}

export interface ForwardResult {
  /** B*T*V logits. */
  logits: Float32Array;
  loss: number;
  tokens: number;
}

export type BackendName = 'cpu' | 'webgpu';

export interface TrainingBackend {
  readonly name: BackendName;
  readonly config: ModelConfig;
  /** Upload a full parameter vector (parameter-table layout). */
  setParams(params: Float32Array): Promise<void>;
  forward(batch: MicroBatch): Promise<ForwardResult>;
  forwardBackward(batch: MicroBatch): Promise<GradientResult>;
  /**
   * Per-sequence log-probabilities (forward only): entry b = sum over row b's masked-in positions
   * of log p(target | prefix), float64 (DPO margins are differences of these; shared/model/dpo.ts).
   */
  sequenceLogProbs(batch: MicroBatch): Promise<Float64Array>;
  /**
   * Forward + backward of the weighted objective sum_b rowWeights[b] * (-log p(sequence b)):
   * every masked-in position of row b weighs rowWeights[b] (the LM loss is the case 1/tokens for
   * every row). `loss` is that weighted sum; `tokens` the masked-in positions. rowWeights: B finite.
   */
  forwardBackwardWeighted(batch: MicroBatch, rowWeights: Float32Array): Promise<GradientResult>;
  /** Free device resources; the backend is unusable afterwards. */
  dispose(): void;
}

// ---------------------------------------------------------------------------------------------
// Pipeline stages (docs/pipeline.md): a StageBackend runs blocks [from, to) of the model, plus the
// embeddings when first and ln_f + head + loss when last. It keeps no activations between calls:
// forwardBackward recomputes the stage's forward from its input (re-materialisation).

/** A stage's micro-batch. */
export interface StageInput {
  B: number;
  T: number;
  /** Token ids [B*T]: required by the first stage (embeddings). */
  inputs?: Int32Array;
  /** [B*T*C], the previous stage's output: required by every other stage. */
  acts?: Float32Array;
  /** [B*T]: head stage only. */
  targets?: Int32Array;
  /** [B*T]: head stage only. */
  mask?: Uint8Array;
  /**
   * Head stage, --objective dpo (docs/dpo.md): the micro-batch's rows 2i, 2i+1 are pair i (chosen,
   * rejected) for i < refLogProbs.length / 2, the rows after them padding (mask 0). The head then
   * computes the DPO objective itself (shared/model/dpo.ts stageDpo) instead of the mean masked CE.
   */
  dpo?: StageDpo;
}

/** A head stage's preference pairs: beta and the frozen reference's sequence log-probs of the pair rows. */
export interface StageDpo {
  beta: number;
  /** 2 x pairs values (<= B): rows 0 .. 2 pairs - 1. */
  refLogProbs: Float32Array;
}

export interface StageGradientResult {
  /**
   * d(mean masked loss of this micro-batch)/d(stage params), stage-table layout. With `dpo` (head
   * stage), the loss is the mean DPO loss over the micro-batch's pairs and `tokens` the pairs.
   */
  grads: Float32Array;
  /** [B*T*C], d(loss)/d(acts input); absent for the first stage. */
  dIn?: Float32Array;
  /** Head stage only: the micro-batch's masked mean loss and its token count. */
  loss?: number;
  tokens?: number;
  gradNorm: number;
  nonFinite: number;
  timings: StepTimings;
}

export interface StageSpecLike {
  from: number;
  to: number;
}

export interface StageBackend {
  readonly name: BackendName;
  readonly config: ModelConfig;
  readonly spec: StageSpecLike;
  /** Upload the stage's parameters (buildStageTable(config, spec) layout). */
  setParams(stageParams: Float32Array): Promise<void>;
  /** Non-head stage: its output [B*T*C]. Head stage: the logits [B*T*V]. */
  forward(input: StageInput): Promise<Float32Array>;
  /** Recomputes the forward, then the backward; dOut [B*T*C] is required unless the stage is the head. */
  forwardBackward(input: StageInput, dOut?: Float32Array): Promise<StageGradientResult>;
  /**
   * Fixed-shape engines: compile the stage for micro-batches of B x T now (before the first hop);
   * absent where nothing is compiled per shape (CPU). `dpo`: the head also compiles the DPO kernels.
   */
  prepare?(B: number, T: number, opts?: { dpo?: boolean }): Promise<void>;
  dispose(): void;
}
