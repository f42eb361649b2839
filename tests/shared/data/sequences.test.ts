import { describe, expect, it } from 'vitest';
import { buildMicroBatch, instructionRow, pairRow, textRow, PAD_ID } from '../../../shared/data/sequences.ts';
import { syntheticDataset, syntheticId } from '../../../shared/data/synthetic.ts';
import { encode, EOS_ID } from '../../../shared/tokenizer.ts';

describe('samples -> rows', () => {
  it('instruction row: prompt, response, EOS; loss only on response tokens and the EOS target', () => {
    const T = 10;
    const row = pairRow('1+2=', '3', T);
    // tokens: '1' '+' '2' '=' '3' EOS -> 5 positions
    expect(Array.from(row.inputs)).toEqual([...encode('1+2=3'), PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]);
    expect(Array.from(row.targets)).toEqual([...encode('+2=3'), EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]);
    expect(Array.from(row.mask)).toEqual([0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
  });

  it('masked targets are exactly the response bytes followed by EOS', () => {
    const prompt = 'rev dog=';
    const response = 'god';
    const row = pairRow(prompt, response, 20);
    const learned = Array.from(row.targets).filter((_, t) => row.mask[t] === 1);
    expect(learned).toEqual([...encode(response), EOS_ID]);
  });

  it('a sample that exactly fits T is accepted; one more token is rejected', () => {
    expect(() => instructionRow([1, 2], [3, 4], 4)).not.toThrow();
    expect(() => instructionRow([1, 2], [3, 4, 5], 4)).toThrow(/needs 5 positions .* T is 4/);
  });

  it('text row: loss on every real position, padding masked', () => {
    const row = textRow([5, 6, 7], 4);
    expect(Array.from(row.inputs)).toEqual([5, 6, PAD_ID, PAD_ID]);
    expect(Array.from(row.targets)).toEqual([6, 7, PAD_ID, PAD_ID]);
    expect(Array.from(row.mask)).toEqual([1, 1, 0, 0]);
  });

  it('buildMicroBatch lays rows out [b][t] in the order of the ids', () => {
    const T = 12;
    const ds = syntheticDataset(50, T);
    const ids = [7, 0, 42];
    const mb = buildMicroBatch(ds, ids);
    expect(mb.B).toBe(3);
    expect(mb.T).toBe(T);
    expect(mb.inputs.length).toBe(3 * T);
    ids.forEach((id, b) => {
      expect(syntheticId(mb.inputs.subarray(b * T, (b + 1) * T))).toBe(id);
      const len = 4 + (id % (T - 3)) - 1;
      expect(Array.from(mb.mask.subarray(b * T, (b + 1) * T)).reduce((a, c) => a + c, 0)).toBe(len);
    });
    expect(() => buildMicroBatch(ds, [50])).toThrow(/sample id 50 outside 0..49/);
    expect(() => buildMicroBatch(ds, [])).toThrow(/no sample ids/);
  });
});
