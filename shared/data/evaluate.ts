// Exact-match evaluation: the model's generated response must equal the reference response
// exactly (after cutting at the first EOS marker, if the generate function left one in).

import { EOS_TEXT } from '../tokenizer.ts';
import type { EvalExample, EvalOptions, EvalResult, GenerateFn, PromptPair } from './types.ts';

const KEEP_EXAMPLES = 8;

export async function exactMatch(pairs: PromptPair[], generate: GenerateFn, opts: EvalOptions = {}): Promise<EvalResult> {
  const n = Math.min(pairs.length, opts.limit ?? pairs.length);
  let correct = 0;
  const wrong: EvalExample[] = [];
  const right: EvalExample[] = [];
  for (let i = 0; i < n; i++) {
    const { prompt, response } = pairs[i];
    let output = await generate(prompt);
    const cut = output.indexOf(EOS_TEXT);
    if (cut >= 0) output = output.slice(0, cut);
    const ok = output === response;
    if (ok) correct++;
    const list = ok ? right : wrong;
    if (list.length < KEEP_EXAMPLES) list.push({ prompt, response, output, correct: ok });
  }
  return {
    accuracy: n === 0 ? 0 : correct / n,
    correct,
    total: n,
    examples: [...wrong, ...right].slice(0, KEEP_EXAMPLES),
  };
}
