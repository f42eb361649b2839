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

/** Exact match of one task of a multi-task dataset (e.g. addition / subtraction / reversal). */
export interface TaskAccuracy {
  task: string;
  correct: number;
  total: number;
  accuracy: number;
}

export interface EvalResult {
  accuracy: number;
  correct: number;
  total: number;
  /** Up to a few examples (first wrong ones first) for logs. */
  examples: EvalExample[];
  /**
   * The same few held-out prompts at every evaluation (the first ones of each task, in held-out
   * order), right or wrong, so a person watching sees the answers change as the model learns.
   */
  samples: EvalExample[];
  /** Per-task exact match, when the dataset names its tasks (in first-seen order); else []. */
  tasks: TaskAccuracy[];
}

export interface EvalOptions {
  /** Evaluate only the first `limit` held-out pairs (default: all). */
  limit?: number;
  /** Task name of a prompt, for per-task accuracy (the dataset supplies it). */
  taskOf?: (prompt: string) => string;
  /** Stable samples kept per task (default 2; 6 in all when there are no tasks). */
  samplesPerTask?: number;
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
  /** True for the built-in task (coordinator defaults such as --eval-samples depend on it). */
  builtIn?: boolean;
  /** Example prompts of the task, for the playground (built-in task only). */
  examplePrompts?: string[];
  /** How a person reads an answer when it is not written as people write it (e.g. digits units first), else null. */
  readAnswer?(prompt: string, output: string): string | null;
  /** One line on how the task's answers are written, for the playground and the log (when not plain). */
  answerNote?: string;
  /** Exact-match accuracy on heldOut.pairs (instruction datasets only). */
  evaluate?(generate: GenerateFn, opts?: EvalOptions): Promise<EvalResult>;
}
