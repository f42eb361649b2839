// The dataset contract between data sources and the coordinator. A dataset is a fixed list of
// training samples addressed by id 0..size-1 (the epoch sampler permutes ids), each already a
// fixed-length training row of T positions, plus a disjoint held-out split.

/** One training row: inputs[t] predicts targets[t]; mask[t] = 1 where that loss counts. Length T. */
export interface SequenceSample {
  inputs: Int32Array;
  targets: Int32Array;
  mask: Uint8Array;
}

/** An instruction example as text. */
export interface PromptPair {
  prompt: string;
  response: string;
}

/** Text in, generated text out (the response only, without the prompt, ended at EOS). */
export type GenerateFn = (prompt: string) => string | Promise<string>;

export interface EvalExample extends PromptPair {
  output: string;
  correct: boolean;
}

export interface EvalResult {
  accuracy: number;
  correct: number;
  total: number;
  /** Up to a few examples (first wrong ones first) for logs and the dashboard. */
  examples: EvalExample[];
}

export interface EvalOptions {
  /** Evaluate only the first `limit` held-out pairs (default: all). */
  limit?: number;
}

export interface SampleSource {
  /** Number of samples, addressed by id 0..size-1. */
  size: number;
  /** Throws AppError ERR_SAMPLE_ID for an id outside 0..size-1. */
  sample(id: number): SequenceSample;
}

export interface HeldOut extends SampleSource {
  /** Prompt/response pairs for exact-match evaluation (instruction data only). */
  pairs?: PromptPair[];
}

export interface Dataset extends SampleSource {
  /** Human-readable name, e.g. "arith-rev(seed=1)" or the file name. */
  name: string;
  /** 'instruction': loss on responses + EOS; 'text': loss on every position. */
  kind: 'instruction' | 'text';
  /** Positions per sample. */
  T: number;
  /** Stable hash of the content and T: a checkpoint records it, resume refuses another dataset. */
  fingerprint: string;
  heldOut: HeldOut;
  /** Exact-match accuracy on heldOut.pairs (instruction datasets only). */
  evaluate?(generate: GenerateFn, opts?: EvalOptions): Promise<EvalResult>;
}
