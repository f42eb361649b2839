// Preference pairs as a dataset (shared/data/preference-data.ts): ids are pairs, a pair's two rows
// sit side by side (chosen, rejected) with the loss mask on the answer + EOS only, the held-out split
// is a seeded 5% disjoint from train, the fingerprint covers every row, and ids out of range are
// refused by name. And the DPO math (shared/model/dpo.ts) on hand-computed numbers.

import { describe, expect, it } from 'vitest';
import { preferenceDataset } from '../../shared/data/preference-data.ts';
import { pairFigures, preferenceSummary, softplus } from '../../shared/model/dpo.ts';
import { EOS_ID, encode } from '../../shared/tokenizer.ts';
import { offByOnePreferences } from './make-preferences.ts';

describe('preference dataset', () => {
  const rows = offByOnePreferences(40, 9);
  const ds = preferenceDataset(rows, 'p.jsonl', { T: 16, seed: 4 });

  it('holds out a seeded 5% (2 of 40), disjoint from train; ids are pairs', () => {
    expect(ds.size).toBe(38);
    expect(ds.heldOut.size).toBe(2);
    const train = new Set(ds.train.map((r) => r.prompt));
    for (const h of ds.held) expect(train.has(h.prompt)).toBe(false);
    expect(preferenceDataset(rows, 'p.jsonl', { T: 16, seed: 4 }).held).toEqual(ds.held);
    expect(preferenceDataset(rows, 'p.jsonl', { T: 16, seed: 5 }).held).not.toEqual(ds.held);
  });

  it('a batch of pair ids is rows chosen, rejected per pair, masked on answer + EOS', () => {
    const b = ds.pairBatch([3, 0]);
    expect(b.B).toBe(4);
    const row = (r: number) => Array.from(b.inputs.subarray(r * 16, r * 16 + 16));
    for (const [r, pair, which] of [[0, ds.train[3], 'chosen'], [1, ds.train[3], 'rejected'], [2, ds.train[0], 'chosen'], [3, ds.train[0], 'rejected']] as const) {
      const ids = [...encode(pair.prompt), ...encode(pair[which]), EOS_ID];
      expect(row(r).slice(0, ids.length - 1)).toEqual(ids.slice(0, -1));
      const mask = Array.from(b.mask.subarray(r * 16, r * 16 + 16));
      const p = encode(pair.prompt).length;
      expect(mask).toEqual(Array.from({ length: 16 }, (_, t) => (t + 1 >= p && t < ids.length - 1 ? 1 : 0)));
    }
    expect(() => ds.pairBatch([38])).toThrow(/sample id 38 outside 0..37/);
    expect(ds.pairBatch([1], 'heldOut').B).toBe(2);
  });

  it('the fingerprint changes with any row', () => {
    const other = rows.map((r, i) => (i === 17 ? { ...r, rejected: r.rejected + '0' } : r));
    expect(preferenceDataset(other, 'p.jsonl', { T: 16, seed: 4 }).fingerprint).not.toBe(ds.fingerprint);
  });
});

describe('DPO math', () => {
  it('loss, margins and row weights by hand', () => {
    const batch = { B: 4, T: 1, inputs: new Int32Array(4), targets: new Int32Array(4), mask: new Uint8Array(4) };
    const beta = 0.5;
    const policy = [-1, -3, -2, -1.5];
    const ref = [-1.5, -2.5, -2, -2];
    const f = pairFigures(policy, { batch, pairs: 2, ref, beta });
    // d0 = (-1 + 1.5) - (-3 + 2.5) = 1; d1 = (-2 + 2) - (-1.5 + 2) = -0.5
    expect(Array.from(f.d)).toEqual([1, -0.5]);
    expect(Array.from(f.policyMargin)).toEqual([2, -0.5]);
    expect(f.loss).toBeCloseTo((softplus(-0.5) + softplus(0.25)) / 2, 12);
    const w0 = (beta / (1 + Math.exp(0.5))) / 2;
    const w1 = (beta / (1 + Math.exp(-0.25))) / 2;
    expect(Array.from(f.rowWeights)).toEqual([w0, -w0, w1, -w1].map(Math.fround));
    const s = preferenceSummary([f], beta);
    expect(s).toEqual({ loss: f.loss, preferenceAccuracy: 0.5, rewardMargin: (0.5 - 0.25) / 2, pairs: 2 });
  });
});
