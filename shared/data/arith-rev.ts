// The built-in default dataset: a tiny instruction task for the ~1M-parameter `small` model. How fast
// the default settings teach it (exact match per task over training steps) is measured in
// docs/model.md, "The default run against the goals": with `npm start`'s defaults held-out exact
// match passed 95% at step 5,624 of the 6,000-step schedule; addition was learned first, subtraction
// and reversal in the final anneal. Answers: `plain` writes them most significant digit first, as
// people read them (this library's default); `padded` and `padded-reversed` (units first, the
// coordinator's default, --answers) are fixed-width: ARITH_REV_ANSWERS, arithAnswer.
//   "12+34=" -> "46"      two-digit addition (all 90*90 pairs)
//   "57-23=" -> "34"      two-digit subtraction with a >= b (all 4095 pairs, never negative)
//   "rev cat=" -> "tac"   reverse a 3-5 letter lowercase word (seeded random words)
// Everything derives from the seed: the same seed gives the same samples, split and order.
// The held-out split is a set of distinct prompts that never appear in train (checked here).
// Longest row: "rev abcde=" (10) + "edcba" (5) + EOS - 1 = 15 positions (< 24).

import { Rng } from '../rng.ts';
import { AppError } from '../errors.ts';
import { exactMatch } from './evaluate.ts';
import { checkSampleId, fnv1a, pairRow } from './sequences.ts';
import type { Dataset, PromptPair } from './types.ts';

export const ARITH_REV_MAX_POSITIONS = 15;

export interface ArithRevOptions {
  seed: number;
  /** Positions per row (>= 15). */
  T: number;
  /** Held-out pairs (default 200). */
  heldOut?: number;
  /** Reversal words to generate (default 6000, so ~1/3 of the task is reversal). */
  words?: number;
  /** A reduced task (tests): only these of addition / subtraction / reversal (default all three). */
  tasks?: readonly ArithRevTask[];
  /** Data mix: reversal pairs kept in train (the first N in the seeded order; default ARITH_REV_MIX). */
  trainWords?: number;
  /** Data mix: each subtraction pair appears this many times per epoch (default ARITH_REV_MIX). */
  subtractionRepeat?: number;
  /** How arithmetic answers are written (default ARITH_REV_ANSWERS; see arithAnswer). */
  answers?: ArithRevAnswers;
}

/**
 * How the arithmetic answers are written (reversal answers never change):
 *   'plain'    "12+34=" -> "46", "57-52=" -> "5"      (as people write them)
 *   'padded'   "12+34=" -> "046", "57-52=" -> "05"    (fixed width: addition 3 digits, subtraction 2,
 *                                                     so every answer digit sits at a fixed position)
 *   'padded-reversed'  "12+34=" -> "640", "57-52=" -> "50"  (the same, least significant digit first:
 *                                                     each digit then depends only on digits already seen)
 * Measured in docs/model.md ("Teaching the built-in task"). Only the text changes, not the tokenizer.
 */
export const ARITH_REV_ANSWER_FORMATS = ['plain', 'padded', 'padded-reversed'] as const;
export type ArithRevAnswers = (typeof ARITH_REV_ANSWER_FORMATS)[number];
export const ARITH_REV_ANSWERS: ArithRevAnswers = 'plain';

/** The answer text of an arithmetic result in the given format. */
export function arithAnswer(value: number, task: 'addition' | 'subtraction', answers: ArithRevAnswers): string {
  if (answers === 'plain') return String(value);
  const padded = String(value).padStart(task === 'addition' ? 3 : 2, '0');
  return answers === 'padded' ? padded : [...padded].reverse().join('');
}

/**
 * How a person reads an arithmetic answer written in `answers` ("640" in padded-reversed reads 46), or
 * null when it reads as written (plain answers, reversal prompts, or an output that is not digits).
 */
export function readArithAnswer(prompt: string, output: string, answers: ArithRevAnswers): string | null {
  if (answers === 'plain' || !/^\d+[+-]\d+=$/.test(prompt) || !/^\d+$/.test(output)) return null;
  return String(Number(answers === 'padded' ? output : [...output].reverse().join('')));
}

/**
 * The default data mix of the training split (docs/model.md, "Teaching the built-in task"): the held-out
 * split is drawn from the whole pool first, so it does not depend on the mix.
 */
export const ARITH_REV_MIX = { trainWords: 6000, subtractionRepeat: 1 } as const;

export const ARITH_REV_TASKS = ['addition', 'subtraction', 'reversal'] as const;
export type ArithRevTask = (typeof ARITH_REV_TASKS)[number];

/** Which of the three tasks a prompt of this dataset belongs to (named error for anything else). */
export function arithRevTaskOf(prompt: string): ArithRevTask {
  if (/^rev [a-z]+=$/.test(prompt)) return 'reversal';
  if (/^\d+\+\d+=$/.test(prompt)) return 'addition';
  if (/^\d+-\d+=$/.test(prompt)) return 'subtraction';
  throw new AppError('ERR_DATA_TASK', `arith-rev dataset: "${prompt}" is not a prompt of the task`, 400,
    'prompts look like "12+34=", "57-23=" or "rev cat="');
}

/** Prompts a person can try in the playground (none is in the held-out split of seed 1, most are in train). */
export const ARITH_REV_EXAMPLE_PROMPTS = ['12+34=', '57-23=', 'rev cat=', '45+45=', '90-19=', 'rev hello='];

function arithPairs(answers: ArithRevAnswers): PromptPair[] {
  const out: PromptPair[] = [];
  for (let a = 10; a <= 99; a++) {
    for (let b = 10; b <= 99; b++) {
      out.push({ prompt: `${a}+${b}=`, response: arithAnswer(a + b, 'addition', answers) });
      if (a >= b) out.push({ prompt: `${a}-${b}=`, response: arithAnswer(a - b, 'subtraction', answers) });
    }
  }
  return out;
}

function wordPairs(rng: Rng, count: number): PromptPair[] {
  const seen = new Set<string>();
  const out: PromptPair[] = [];
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  // 26^3 + 26^4 + 26^5 words exist, so `count` distinct ones are always found quickly.
  while (out.length < count) {
    const len = 3 + rng.int(3);
    let w = '';
    for (let i = 0; i < len; i++) w += letters[rng.int(26)];
    if (seen.has(w)) continue;
    seen.add(w);
    out.push({ prompt: `rev ${w}=`, response: [...w].reverse().join('') });
  }
  return out;
}

/** All pairs of the task, shuffled by the seed, split into held-out (first) and train (rest). */
export function arithRevPairs(seed: number, heldOut = 200, words = 6000, tasks: readonly ArithRevTask[] = ARITH_REV_TASKS,
  answers: ArithRevAnswers = ARITH_REV_ANSWERS): { train: PromptPair[]; heldOut: PromptPair[] } {
  for (const t of tasks) {
    if (!ARITH_REV_TASKS.includes(t)) throw new AppError('ERR_DATA_OPTIONS', `arith-rev dataset: unknown task "${t}"; allowed: ${ARITH_REV_TASKS.join(', ')}`);
  }
  if (!ARITH_REV_ANSWER_FORMATS.includes(answers)) {
    throw new AppError('ERR_DATA_OPTIONS', `arith-rev dataset: unknown answer format "${answers}"; allowed: ${ARITH_REV_ANSWER_FORMATS.join(', ')}`);
  }
  const rng = new Rng(seed);
  // The words are drawn first whatever the task list, so a reduced task keeps the same words.
  const wordList = wordPairs(rng, words);
  const all = [...arithPairs(answers), ...wordList].filter((p) => tasks.includes(arithRevTaskOf(p.prompt)));
  rng.shuffle(all);
  if (heldOut < 0 || heldOut >= all.length) {
    throw new AppError('ERR_DATA_OPTIONS', `arith-rev dataset: heldOut must be in 0..${all.length - 1}, got ${heldOut}`);
  }
  // Prompts are unique across the whole pool (arith pairs are distinct, words are deduplicated),
  // so slicing gives disjoint splits.
  return { heldOut: all.slice(0, heldOut), train: all.slice(heldOut) };
}

export function arithRevDataset(opts: ArithRevOptions): Dataset {
  const { seed, T } = opts;
  if (!Number.isInteger(T) || T < ARITH_REV_MAX_POSITIONS) {
    throw new AppError('ERR_DATA_OPTIONS', `arith-rev dataset: T must be an integer >= ${ARITH_REV_MAX_POSITIONS}, got ${T}`,
      400, 'use a model contextLength of at least 15');
  }
  const tasks = opts.tasks ?? ARITH_REV_TASKS;
  const trainWords = opts.trainWords ?? ARITH_REV_MIX.trainWords;
  const repeat = opts.subtractionRepeat ?? ARITH_REV_MIX.subtractionRepeat;
  if (!Number.isInteger(trainWords) || trainWords < 0) throw new AppError('ERR_DATA_OPTIONS', `arith-rev dataset: trainWords must be an integer >= 0, got ${trainWords}`);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 10) throw new AppError('ERR_DATA_OPTIONS', `arith-rev dataset: subtractionRepeat must be an integer in 1..10, got ${repeat}`);
  const answers = opts.answers ?? ARITH_REV_ANSWERS;
  const split = arithRevPairs(seed, opts.heldOut ?? 200, opts.words ?? 6000, tasks, answers);
  // The mix: keep the first trainWords reversal pairs, repeat each subtraction pair (ids differ, the
  // epoch sampler permutes them like any other sample).
  const train: PromptPair[] = [];
  let words = 0;
  for (const p of split.train) {
    const task = arithRevTaskOf(p.prompt);
    if (task === 'reversal' && ++words > trainWords) continue;
    for (let k = task === 'subtraction' ? repeat : 1; k > 0; k--) train.push(p);
  }
  const reduced = tasks.length !== ARITH_REV_TASKS.length || opts.words !== undefined || opts.heldOut !== undefined;
  const mixed = trainWords !== ARITH_REV_MIX.trainWords || repeat !== ARITH_REV_MIX.subtractionRepeat;
  // The answer format is part of the name (so of the fingerprint: a checkpoint of one format is not
  // resumed on another) but not of "built-in": the coordinator's --answers picks it for the built-in task.
  const format = answers === ARITH_REV_ANSWERS ? '' : `, answers=${answers}`;
  const name = reduced || mixed
    ? `arith-rev(seed=${seed}, ${tasks.join('+')}, words=${opts.words ?? 6000}, heldOut=${split.heldOut.length}, trainWords=${trainWords}, subtractionRepeat=${repeat}${format})`
    : `arith-rev(seed=${seed}${format})`;
  return {
    name,
    kind: 'instruction',
    builtIn: !reduced && !mixed,
    examplePrompts: ARITH_REV_EXAMPLE_PROMPTS,
    ...(answers === 'plain' ? {} : {
      readAnswer: (prompt: string, output: string) => readArithAnswer(prompt, output, answers),
      answerNote: answers === 'padded'
        ? 'arithmetic answers are zero-padded to a fixed width: "12+34=" -> "046" (= 46)'
        : 'arithmetic answers are zero-padded and written units first: "12+34=" -> "640" (= 46), "57-23=" -> "43" (= 34)',
    }),
    T,
    size: train.length,
    fingerprint: fnv1a([name, String(T), String(train.length), String(split.heldOut.length)]),
    sample(id: number) {
      checkSampleId(id, train.length, name);
      const p = train[id];
      return pairRow(p.prompt, p.response, T);
    },
    heldOut: {
      size: split.heldOut.length,
      pairs: split.heldOut,
      sample(id: number) {
        checkSampleId(id, split.heldOut.length, `${name} held-out`);
        const p = split.heldOut[id];
        return pairRow(p.prompt, p.response, T);
      },
    },
    evaluate: (generate, evalOpts) => exactMatch(split.heldOut, generate, { taskOf: arithRevTaskOf, ...evalOpts }),
  };
}
