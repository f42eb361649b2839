// Exact-match evaluation: the model's generated response must equal the reference response
// exactly (after cutting at the first EOS marker, if the generate function left one in).
// With a task classifier (opts.taskOf) it also reports exact match per task, and it always keeps a
// stable handful of samples (the first held-out prompts of each task) for the dashboard.

import { EOS_TEXT } from '../tokenizer.ts';
import type { EvalExample, EvalOptions, EvalResult, GenerateFn, PromptPair, TaskAccuracy } from './types.ts';

const KEEP_EXAMPLES = 8;
const SAMPLES_PER_TASK = 2;
const SAMPLES_UNTASKED = 6;

export async function exactMatch(pairs: PromptPair[], generate: GenerateFn, opts: EvalOptions = {}): Promise<EvalResult> {
  const n = Math.min(pairs.length, opts.limit ?? pairs.length);
  const perTask = opts.taskOf ? (opts.samplesPerTask ?? SAMPLES_PER_TASK) : SAMPLES_UNTASKED;
  let correct = 0;
  const wrong: EvalExample[] = [];
  const right: EvalExample[] = [];
  const samples: EvalExample[] = [];
  const tasks = new Map<string, { correct: number; total: number; shown: number }>();
  for (let i = 0; i < n; i++) {
    const { prompt, response } = pairs[i];
    let output = await generate(prompt);
    const cut = output.indexOf(EOS_TEXT);
    if (cut >= 0) output = output.slice(0, cut);
    const ok = output === response;
    if (ok) correct++;
    const ex: EvalExample = { prompt, response, output, correct: ok };
    const list = ok ? right : wrong;
    if (list.length < KEEP_EXAMPLES) list.push(ex);
    const task = opts.taskOf ? opts.taskOf(prompt) : '';
    let t = tasks.get(task);
    if (!t) tasks.set(task, (t = { correct: 0, total: 0, shown: 0 }));
    t.total++;
    if (ok) t.correct++;
    if (t.shown < perTask) {
      t.shown++;
      samples.push(ex);
    }
  }
  const byTask: TaskAccuracy[] = opts.taskOf
    ? [...tasks].map(([task, t]) => ({ task, correct: t.correct, total: t.total, accuracy: t.correct / t.total }))
    : [];
  return {
    accuracy: n === 0 ? 0 : correct / n,
    correct,
    total: n,
    examples: [...wrong, ...right].slice(0, KEEP_EXAMPLES),
    samples,
    tasks: byTask,
  };
}
