// One entry point for the coordinator: `--data` absent -> the built-in arith-rev task,
// `--data file.txt|file.jsonl` -> the user's file (see files.ts for the rules).

import { arithRevDataset, type ArithRevAnswers } from './arith-rev.ts';
import { loadDataFile } from './files.ts';
import type { Dataset } from './types.ts';

export interface DataSpec {
  /** Path of a .txt or .jsonl file; omitted for the built-in default. */
  data?: string;
  /** Positions per row (the model's contextLength or the training sequence length). */
  T: number;
  /** Seed of the built-in generator and of held-out choices. */
  seed: number;
  /** Built-in task: how arithmetic answers are written (default the task's ARITH_REV_ANSWERS). */
  answers?: ArithRevAnswers;
}

export function loadDataset(spec: DataSpec): Dataset {
  return spec.data ? loadDataFile(spec.data, { T: spec.T, seed: spec.seed }) : arithRevDataset({ seed: spec.seed, T: spec.T, ...(spec.answers ? { answers: spec.answers } : {}) });
}

export * from './types.ts';
export { arithAnswer, arithRevDataset, readArithAnswer, arithRevPairs, arithRevTaskOf, ARITH_REV_ANSWER_FORMATS, ARITH_REV_ANSWERS, ARITH_REV_EXAMPLE_PROMPTS, ARITH_REV_MAX_POSITIONS, ARITH_REV_TASKS, type ArithRevAnswers, type ArithRevTask } from './arith-rev.ts';
export { loadDataFile, parseDataBytes } from './files.ts';
export { buildMicroBatch, instructionRow, pairRow, textRow, PAD_ID } from './sequences.ts';
export { EpochSampler, CoverageLedger, epochPermutation, type SamplerCursor, type Shard } from './sampler.ts';
export { exactMatch } from './evaluate.ts';
export { syntheticDataset, syntheticRow, syntheticId, syntheticTokens } from './synthetic.ts';
