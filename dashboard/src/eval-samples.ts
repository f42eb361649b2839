// The held-out answers panel next to the accuracy chart: at each evaluation the coordinator pushes
// a few fixed held-out prompts with the model's greedy answers (EvalPoint.samples) and the exact
// match per task. Prompts and answers are model/data text: they reach the page through el() /
// text nodes only, never as markup (the pages have a strict CSP).

import type { EvalPoint, EvalSample, EvalTaskAccuracy, PreferenceEvalFigures, StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { clear, el, setText } from './dom.ts';

export interface EvalSamplesView {
  /** "step 1,200: 96.5% exact match" or the waiting text. */
  heading: string;
  /** "addition 95.2% (79/83)" per task. */
  tasks: string[];
  rows: Array<{ prompt: string; output: string; want: string; correct: boolean }>;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Pure mapping of a pushed eval point (or status.eval) to what the panel shows. */
export function evalSamplesView(e: Pick<EvalPoint, 'step' | 'accuracy'> & PreferenceEvalFigures & { tasks?: EvalTaskAccuracy[]; samples?: EvalSample[] } | null | undefined): EvalSamplesView {
  const preference = typeof e?.preferenceAccuracy === 'number';
  if (!e || ((!Array.isArray(e.samples) || e.samples.length === 0) && !preference)) {
    return { heading: 'No held-out answers yet: they appear at the first evaluation.', tasks: [], rows: [] };
  }
  const acc = typeof e.accuracy === 'number' ? `: ${pct(e.accuracy)} exact match` : '';
  // --objective dpo: the held-out pair figures first (docs/dpo.md).
  const pref = preference
    ? [`preference accuracy ${pct(e.preferenceAccuracy!)} of ${Number(e.pairs ?? 0)} held-out pairs`, `reward margin ${Number(e.rewardMargin ?? 0).toFixed(4)}`]
    : [];
  return {
    heading: `After step ${(e.step + 1).toLocaleString('en-US')}${acc}`,
    tasks: [...pref, ...(e.tasks ?? []).map((t) => `${t.task} ${pct(t.accuracy)} (${t.correct}/${t.total})`)],
    rows: (e.samples ?? []).map((s) => ({ prompt: String(s.prompt), output: String(s.output), want: String(s.response), correct: s.correct === true })),
  };
}

export function renderEvalSamples(root: HTMLElement, v: EvalSamplesView): void {
  setText(root.querySelector('[data-role=heading]')!, v.heading);
  const tasks = root.querySelector<HTMLElement>('[data-role=tasks]')!;
  clear(tasks);
  for (const t of v.tasks) tasks.append(el('li', {}, t));
  const body = root.querySelector<HTMLElement>('[data-role=rows]')!;
  clear(body);
  for (const r of v.rows) {
    body.append(el('tr', { className: r.correct ? 'ok' : 'bad', attrs: { 'data-correct': String(r.correct) } },
      el('td', { className: 'mono' }, r.prompt),
      el('td', { className: 'mono' }, r.output === '' ? '(empty)' : r.output),
      el('td', {}, r.correct ? '✓' : `✗ want ${r.want}`)));
  }
}

/** The playground's prompt suggestions: status.task.examplePrompts (non-empty strings, at most 12). */
export function suggestionPrompts(snap: Pick<StatusSnapshot, 'task'> | null | undefined): string[] {
  const list = snap?.task?.examplePrompts;
  return Array.isArray(list) ? list.filter((p): p is string => typeof p === 'string' && p.length > 0).slice(0, 12) : [];
}
