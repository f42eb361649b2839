// Per-task evaluation of the built-in task, the stable dashboard samples, the reduced task for
// learning tests, and the coordinator's eval log line (issue 14).
import { describe, expect, it } from 'vitest';
import { ARITH_REV_EXAMPLE_PROMPTS, arithRevDataset, arithRevPairs, arithRevTaskOf } from '../../../shared/data/index.ts';
import { Evaluator, type EvalOutcome } from '../../../coordinator/train/evaluate.ts';
import { presetConfig } from '../../../shared/model/config.ts';

describe('arith-rev tasks', () => {
  it('names the task of every prompt and refuses a foreign prompt with a named error', () => {
    expect(arithRevTaskOf('12+34=')).toBe('addition');
    expect(arithRevTaskOf('57-23=')).toBe('subtraction');
    expect(arithRevTaskOf('rev cat=')).toBe('reversal');
    expect(() => arithRevTaskOf('hello')).toThrow(/not a prompt of the task/);
    expect(() => arithRevTaskOf('rev CAT=')).toThrow(expect.objectContaining({ code: 'ERR_DATA_TASK' }));
    for (const p of ARITH_REV_EXAMPLE_PROMPTS) expect(['addition', 'subtraction', 'reversal']).toContain(arithRevTaskOf(p));
  });

  it('the default split is unchanged by the task filter, and a reduced task keeps only its pairs', () => {
    const all = arithRevPairs(1);
    expect(all.train.length + all.heldOut.length).toBe(8100 + 4095 + 6000);
    const rev = arithRevPairs(1, 50, 1000, ['reversal']);
    expect(rev.train.length + rev.heldOut.length).toBe(1000);
    expect(new Set([...rev.train, ...rev.heldOut].map((p) => arithRevTaskOf(p.prompt)))).toEqual(new Set(['reversal']));
    expect(() => arithRevPairs(1, 10, 100, ['multiplication' as never])).toThrow(/unknown task "multiplication"/);
    const full = arithRevDataset({ seed: 1, T: 16 });
    expect(full.builtIn).toBe(true);
    expect(full.name).toBe('arith-rev(seed=1)');
    const reduced = arithRevDataset({ seed: 1, T: 16, tasks: ['reversal'], words: 1000, heldOut: 50 });
    expect(reduced.builtIn).toBe(false);
    expect(reduced.fingerprint).not.toBe(full.fingerprint);
  });

  it('the data mix changes only the training split: fewer reversal words, repeated subtraction pairs', () => {
    const base = arithRevDataset({ seed: 1, T: 16, trainWords: 6000, subtractionRepeat: 1 });
    const mixed = arithRevDataset({ seed: 1, T: 16, trainWords: 1000, subtractionRepeat: 2 });
    expect(mixed.heldOut.pairs).toEqual(base.heldOut.pairs);
    const count = (d: typeof base) => {
      const c: Record<string, number> = { addition: 0, subtraction: 0, reversal: 0 };
      for (let id = 0; id < d.size; id++) {
        const r = d.sample(id);
        const n = Array.from(r.mask).indexOf(1); // first response target: the prompt is inputs[0..n]
        const prompt = String.fromCharCode(...Array.from(r.inputs.subarray(0, n + 1)));
        c[arithRevTaskOf(prompt)]++;
      }
      return c;
    };
    const a = count(base);
    const b = count(mixed);
    expect(b.addition).toBe(a.addition);
    expect(b.subtraction).toBe(2 * a.subtraction);
    expect(b.reversal).toBe(1000);
    expect(mixed.fingerprint).not.toBe(base.fingerprint);
    expect(() => arithRevDataset({ seed: 1, T: 16, subtractionRepeat: 0 })).toThrow(/subtractionRepeat must be an integer in 1..10/);
    expect(() => arithRevDataset({ seed: 1, T: 16, trainWords: -1 })).toThrow(/trainWords must be an integer >= 0/);
  });

  it('reports exact match per task and the same first prompts of each task as samples', async () => {
    const ds = arithRevDataset({ seed: 1, T: 16 });
    const pairs = ds.heldOut.pairs!;
    const answers = new Map(pairs.map((p) => [p.prompt, p.response]));
    // Right on addition and reversal, wrong on subtraction.
    const res = await ds.evaluate!((p) => (arithRevTaskOf(p) === 'subtraction' ? '?' : answers.get(p)!));
    const count = (t: string) => pairs.filter((p) => arithRevTaskOf(p.prompt) === t).length;
    expect(res.tasks.map((t) => t.task).sort()).toEqual(['addition', 'reversal', 'subtraction']);
    for (const t of res.tasks) {
      expect(t.total).toBe(count(t.task));
      expect(t.accuracy).toBe(t.task === 'subtraction' ? 0 : 1);
    }
    expect(res.correct).toBe(200 - count('subtraction'));
    expect(res.samples).toHaveLength(6);
    for (const t of ['addition', 'subtraction', 'reversal']) {
      const first2 = pairs.filter((p) => arithRevTaskOf(p.prompt) === t).slice(0, 2).map((p) => p.prompt);
      expect(res.samples.filter((s) => arithRevTaskOf(s.prompt) === t).map((s) => s.prompt)).toEqual(first2);
    }
    const sub = res.samples.find((s) => arithRevTaskOf(s.prompt) === 'subtraction')!;
    expect(sub).toMatchObject({ output: '?', correct: false });
    // Another model state, the same prompts shown.
    const again = await ds.evaluate!(() => '');
    expect(again.samples.map((s) => s.prompt)).toEqual(res.samples.map((s) => s.prompt));
  });
});

describe('coordinator evaluation defaults and log line', () => {
  it('--eval-samples defaults to the whole held-out split for the built-in task, 32 otherwise', () => {
    const model = presetConfig('tiny');
    const builtIn = new Evaluator(model, arithRevDataset({ seed: 1, T: 16 }), undefined);
    expect(builtIn.samples).toBe(200);
    const reduced = new Evaluator(model, arithRevDataset({ seed: 1, T: 16, tasks: ['reversal'], words: 2000 }), undefined);
    expect(reduced.samples).toBe(32);
    const given = new Evaluator(model, arithRevDataset({ seed: 1, T: 16 }), 8);
    expect(given.samples).toBe(8);
    for (const e of [builtIn, reduced, given]) e.dispose();
  });

  it('prints accuracy per task and a sample answer each time, and the try-it-now line once at 95%', () => {
    const ev = new Evaluator(presetConfig('tiny'), arithRevDataset({ seed: 1, T: 16 }), undefined);
    const outcome = (accuracy: number): EvalOutcome => ({
      loss: 0.1234, accuracy, rows: 200, pairs: 200,
      tasks: [{ task: 'addition', correct: 80, total: 90, accuracy: 80 / 90 }],
      samples: [{ prompt: '12+34=', response: '46', output: '41', correct: false }, { prompt: 'rev cat=', response: 'tac', output: 'tac', correct: true }],
    });
    const low = ev.describe(99, outcome(0.5));
    expect(low.line).toBe('eval at step 99: loss 0.1234, exact match 50.0% of 200 held-out (addition 88.9%), e.g. "rev cat=" -> "tac"');
    expect(low.ready).toBeNull();
    const high = ev.describe(199, outcome(0.96));
    expect(high.ready).toMatch(/96\.0% of held-out prompts exactly at step 199 \("rev cat=" -> "tac"\): try it now .*playground.*npm run generate/);
    expect(ev.readyAt).toBe(199);
    expect(ev.describe(299, outcome(0.97)).ready).toBeNull(); // said once
    ev.dispose();
    // The default run writes arithmetic answers units first: the log says how the answer reads.
    const rev = new Evaluator(presetConfig('tiny'), arithRevDataset({ seed: 1, T: 16, answers: 'padded-reversed' }), undefined);
    const r = rev.describe(99, { ...outcome(0.5), samples: [{ prompt: '12+34=', response: '640', output: '640', correct: true }] });
    expect(r.line).toMatch(/e\.g\. "12\+34=" -> "640" \(= 46\)$/);
    rev.dispose();
  });
});
