// The fold-thread prototype (coordinator/train/fold-pool.ts; bench:ingest --threads, not wired into
// the coordinator): the same token-weighted mean as MeanAggregator up to float64 rounding, a
// non-finite or dropped result counts for nothing, and a failed thread surfaces as ERR_FOLD_THREAD.
import { afterEach, describe, expect, it } from 'vitest';
import { FoldPool } from '../../coordinator/train/fold-pool.ts';
import { MeanAggregator } from '../../coordinator/train/aggregate.ts';

const P = 1003;
function grad(seed: number): Float32Array {
  const g = new Float32Array(P);
  let s = seed * 7919 + 17;
  for (let i = 0; i < P; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    g[i] = (s / 2 ** 32 - 0.5) * 10 ** ((i % 7) - 3);
  }
  return g;
}

let pool: FoldPool | null = null;
afterEach(async () => {
  await pool?.close();
  pool = null;
});

describe('FoldPool', () => {
  it('gives MeanAggregator\'s mean up to float64 rounding; refused and dropped results change nothing', async () => {
    pool = new FoldPool(P, 2);
    const ref = new MeanAggregator(P);
    ref.begin(0);
    await pool.begin();
    for (let k = 0; k < 7; k++) {
      const g = grad(k);
      const tokens = 10 + k * 3;
      ref.add(g, tokens, 'w');
      const { held, outcome } = await pool.check(new Float32Array(g), true);
      expect(outcome.ok).toBe(true);
      if (outcome.ok) expect(outcome.norm).toBeCloseTo(Math.hypot(...g), 6);
      await pool.fold(held!, tokens);
    }
    // A NaN anywhere: refused by the thread's scan, with its index; nothing is held or folded.
    const bad = grad(99);
    bad[P - 2] = NaN;
    const r = await pool.check(bad);
    expect(r.held).toBeNull();
    expect(r.outcome).toEqual({ ok: false, index: P - 2, value: 'NaN' });
    // Checked fine, then refused by the judgment (dropped): nothing is counted.
    const refused = await pool.check(grad(123).map((x) => x * 1e6));
    await pool.drop(refused.held!);
    const want = new Float32Array(P);
    const got = new Float32Array(P);
    const tw = ref.finish(want);
    expect(await pool.finish(got)).toBe(tw);
    expect(pool.count).toBe(7);
    let worst = 0;
    for (let i = 0; i < P; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-30));
    expect(worst).toBeLessThan(1e-6); // float32 outputs of two float64 sums in different orders
    expect(got.some((x) => x !== 0)).toBe(true);
    // The next step starts from zero.
    await pool.begin();
    expect(await pool.finish(got)).toBe(0);
    expect(got.every((x) => x === 0)).toBe(true);
  });

  it('hands the gradient over without a copy (the sender\'s array is detached)', async () => {
    pool = new FoldPool(P, 1);
    const g = grad(1);
    await pool.check(g);
    expect(g.length).toBe(0);
    expect(pool.copies).toBe(0);
  });

  it('a failed thread fails open and later requests with ERR_FOLD_THREAD', async () => {
    pool = new FoldPool(P, 2);
    await pool.begin();
    const { held } = await pool.check(grad(1));
    pool.injectFailure(held!.thread);
    await expect(pool.fold(held!, 5).then(() => pool!.finish(new Float32Array(P)))).rejects.toMatchObject({ code: 'ERR_FOLD_THREAD' });
    await expect(pool.check(grad(2))).rejects.toMatchObject({ code: 'ERR_FOLD_THREAD' });
  });
});
