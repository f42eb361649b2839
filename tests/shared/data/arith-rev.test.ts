import { describe, expect, it } from 'vitest';
import { arithRevDataset, arithRevPairs } from '../../../shared/data/arith-rev.ts';
import { decode, EOS_ID } from '../../../shared/tokenizer.ts';

describe('built-in arith-rev dataset', () => {
  it('is deterministic in the seed and differs across seeds', () => {
    const a = arithRevPairs(1);
    const b = arithRevPairs(1);
    const c = arithRevPairs(2);
    expect(a).toEqual(b);
    expect(a.train.slice(0, 20)).not.toEqual(c.train.slice(0, 20));
  });

  it('held-out prompts are disjoint from train and all pairs are correct', () => {
    const { train, heldOut } = arithRevPairs(3);
    expect(heldOut.length).toBe(200);
    const trainPrompts = new Set(train.map((p) => p.prompt));
    expect(trainPrompts.size).toBe(train.length);
    for (const p of heldOut) expect(trainPrompts.has(p.prompt)).toBe(false);
    for (const p of [...train, ...heldOut]) {
      let m: RegExpMatchArray | null;
      if ((m = p.prompt.match(/^(\d\d)\+(\d\d)=$/))) expect(p.response).toBe(String(+m[1] + +m[2]));
      else if ((m = p.prompt.match(/^(\d\d)-(\d\d)=$/))) {
        expect(+m[1]).toBeGreaterThanOrEqual(+m[2]);
        expect(p.response).toBe(String(+m[1] - +m[2]));
      } else if ((m = p.prompt.match(/^rev ([a-z]{3,5})=$/))) expect(p.response).toBe([...m[1]].reverse().join(''));
      else throw new Error(`unexpected prompt ${p.prompt}`);
    }
    const kinds = new Set(train.slice(0, 300).map((p) => p.prompt.startsWith('rev') ? 'rev' : p.prompt.includes('+') ? '+' : '-'));
    expect(kinds).toEqual(new Set(['rev', '+', '-']));
  });

  it('the padded answer format: the same pairs and split, arithmetic answers at a fixed width', () => {
    const padded = arithRevPairs(1, 200, 6000, undefined, 'padded');
    const plain = arithRevPairs(1);
    expect(plain.heldOut.map((p) => p.prompt)).toEqual(padded.heldOut.map((p) => p.prompt));
    const byPrompt = new Map(plain.train.map((p) => [p.prompt, p.response]));
    const all = [...padded.train, ...padded.heldOut];
    expect(all.find((p) => p.prompt === '12+34=')!.response).toBe('046');
    expect(all.find((p) => p.prompt === '57-52=')!.response).toBe('05');
    expect(all.find((p) => p.prompt === '99+99=')!.response).toBe('198');
    for (const p of padded.train) {
      const q = byPrompt.get(p.prompt)!;
      expect(p.response).toBe(p.prompt.startsWith('rev ') ? q : q.padStart(p.prompt.includes('+') ? 3 : 2, '0'));
    }
    const ds = arithRevDataset({ seed: 1, T: 16, answers: 'padded' });
    // The format is the coordinator's --answers for the built-in task: still built in, but named (fingerprinted) apart.
    expect(ds.builtIn).toBe(true);
    expect(ds.name).toBe('arith-rev(seed=1, answers=padded)');
    expect(ds.readAnswer!('12+34=', '046')).toBe('46');
    expect(arithRevDataset({ seed: 1, T: 16, answers: 'padded-reversed' }).readAnswer!('12+34=', '640')).toBe('46');
    expect(arithRevDataset({ seed: 1, T: 16, answers: 'padded-reversed' }).readAnswer!('rev cat=', 'tac')).toBeNull();
    expect(arithRevDataset({ seed: 1, T: 16, answers: 'plain' }).readAnswer).toBeUndefined();
    expect(ds.heldOut.pairs).toEqual(padded.heldOut);
    expect(arithRevDataset({ seed: 1, T: 16, answers: 'plain' }).name).toBe('arith-rev(seed=1)');
    const reversed = arithRevPairs(1, 200, 6000, undefined, 'padded-reversed');
    const rall = [...reversed.train, ...reversed.heldOut];
    expect(rall.find((p) => p.prompt === '12+34=')!.response).toBe('640');
    expect(rall.find((p) => p.prompt === '57-52=')!.response).toBe('50');
    for (const p of reversed.train) if (p.prompt.startsWith('rev ')) expect(p.response).toBe(byPrompt.get(p.prompt));
    expect(reversed.heldOut.map((p) => p.prompt)).toEqual(padded.heldOut.map((p) => p.prompt));
    expect(() => arithRevPairs(1, 200, 6000, undefined, 'reversed' as never)).toThrow(/unknown answer format "reversed"/);
  });

  it('every row is shorter than 24 tokens and ends in EOS', () => {
    const T = 24;
    const ds = arithRevDataset({ seed: 5, T });
    for (let id = 0; id < ds.size; id += 37) {
      const r = ds.sample(id);
      const n = Array.from(r.mask).lastIndexOf(1) + 1;
      expect(n).toBeLessThanOrEqual(15);
      expect(r.targets[n - 1]).toBe(EOS_ID);
    }
    expect(() => arithRevDataset({ seed: 5, T: 14 })).toThrow(/T must be an integer >= 15/);
  });

  it('exact-match evaluator scores a perfect, a wrong and a half-right generator', async () => {
    const ds = arithRevDataset({ seed: 9, T: 16 });
    const pairs = ds.heldOut.pairs!;
    const answers = new Map(pairs.map((p) => [p.prompt, p.response]));
    const perfect = await ds.evaluate!((prompt) => answers.get(prompt)!);
    expect(perfect).toMatchObject({ accuracy: 1, correct: 200, total: 200 });
    const wrong = await ds.evaluate!((prompt) => answers.get(prompt)! + 'x', { limit: 10 });
    expect(wrong).toMatchObject({ accuracy: 0, correct: 0, total: 10 });
    expect(wrong.examples[0].output).toBe(wrong.examples[0].response + 'x');
    let i = 0;
    const half = await ds.evaluate!(async (prompt) => (i++ % 2 === 0 ? answers.get(prompt)! + '<|endoftext|>junk' : ''), { limit: 20 });
    expect(half.correct).toBe(10);
    // Held-out rows decode back to their pair.
    const r = ds.heldOut.sample(0);
    const n = Array.from(r.mask).lastIndexOf(1) + 1;
    expect(decode(Array.from(r.inputs.subarray(0, n)).concat([r.targets[n - 1]]), { skipSpecial: true })).toBe(pairs[0].prompt + pairs[0].response);
  });
});
