// AdamW, clipping and the LR schedule against hand-computed values.
import { describe, expect, it } from 'vitest';
import { PRESETS } from '../../../shared/model/config.ts';
import { buildParameterTable } from '../../../shared/model/parameters.ts';
import { AdamW, adamwStep, createAdamWState, decayMask } from '../../../shared/optim/adamw.ts';
import { clipGradNorm } from '../../../shared/optim/clip.ts';
import { lrAt, runSchedule } from '../../../shared/optim/schedule.ts';

describe('AdamW', () => {
  const hyper = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };

  it('matches the closed form over two steps, with and without decay', () => {
    const params = Float32Array.of(1, -2);
    const state = createAdamWState(2);
    const decay = Uint8Array.of(1, 0);
    const g1 = Float32Array.of(0.5, 0.25);
    const g2 = Float32Array.of(-0.1, 0.3);
    adamwStep(params, g1, state, 0.01, hyper, decay);
    adamwStep(params, g2, state, 0.02, hyper, decay);
    const ref = (p0: number, gs: number[], lrs: number[], wd: number) => {
      let p = p0, m = 0, v = 0;
      gs.forEach((g, i) => {
        const t = i + 1;
        p *= 1 - lrs[i] * wd;
        m = 0.9 * m + 0.1 * g;
        v = 0.95 * v + 0.05 * g * g;
        p -= (lrs[i] * (m / (1 - 0.9 ** t))) / (Math.sqrt(v / (1 - 0.95 ** t)) + 1e-8);
      });
      return p;
    };
    expect(params[0]).toBeCloseTo(ref(1, [0.5, -0.1], [0.01, 0.02], 0.1), 6);
    expect(params[1]).toBeCloseTo(ref(-2, [0.25, 0.3], [0.01, 0.02], 0), 6);
    expect(state.step).toBe(2);
    expect(state.m[0]).toBeCloseTo(0.9 * 0.05 + 0.1 * -0.1, 7);
  });

  it('decays linear weights only, embeddings when asked', () => {
    const table = buildParameterTable(PRESETS.tiny);
    const mask = decayMask(table);
    const withEmb = decayMask(table, true);
    for (const t of table.tensors) {
      const at = mask[t.offset];
      expect(at, t.name).toBe(t.kind === 'weight' ? 1 : 0);
      expect(withEmb[t.offset], t.name).toBe(t.kind === 'weight' || t.kind === 'embedding' ? 1 : 0);
    }
  });

  it('state round-trips through a checkpoint: resumed run equals uninterrupted run', () => {
    const table = buildParameterTable({ vocabSize: 5, contextLength: 3, nLayer: 1, nHead: 1, nEmbd: 2 });
    const grads = Float32Array.from({ length: table.total }, (_, i) => Math.sin(i));
    const a = new AdamW(table, hyper);
    const pa = new Float32Array(table.total).fill(0.5);
    for (let s = 0; s < 4; s++) a.step(pa, grads, 1e-2);
    const b = new AdamW(table, hyper);
    const pb = new Float32Array(table.total).fill(0.5);
    for (let s = 0; s < 2; s++) b.step(pb, grads, 1e-2);
    const c = new AdamW(table, hyper);
    c.loadState({ m: new Float32Array(b.state.m), v: new Float32Array(b.state.v), step: b.state.step });
    for (let s = 0; s < 2; s++) c.step(pb, grads, 1e-2);
    expect(Array.from(pb)).toEqual(Array.from(pa));
  });

  it('rejects mismatched sizes and bad hyperparameters, changing nothing', () => {
    const params = Float32Array.of(1, 2);
    const state = createAdamWState(2);
    expect(() => adamwStep(params, Float32Array.of(1), state, 0.1, hyper, null)).toThrow(/grads has 1 values/);
    expect(() => adamwStep(params, Float32Array.of(1, 1), state, 0.1, { ...hyper, beta2: 1 }, null)).toThrow(/beta2/);
    expect(Array.from(params)).toEqual([1, 2]);
    expect(state.step).toBe(0);
  });
});

describe('clipGradNorm', () => {
  it('returns the pre-clip norm and scales down only above maxNorm', () => {
    const g = Float32Array.of(3, 4);
    expect(clipGradNorm(g, 1)).toBeCloseTo(5, 6);
    expect(Math.hypot(g[0], g[1])).toBeCloseTo(1, 5);
    const h = Float32Array.of(0.3, 0.4);
    expect(clipGradNorm(h, 1)).toBeCloseTo(0.5, 6);
    expect(Array.from(h)).toEqual([Math.fround(0.3), Math.fround(0.4)]);
    expect(() => clipGradNorm(h, 0)).toThrow(/maxNorm/);
  });
});

describe('lrAt', () => {
  const s = { lr: 1e-3, minLr: 1e-4, warmupSteps: 10, totalSteps: 110 };
  it('linear warmup, cosine to minLr, then flat', () => {
    expect(lrAt(0, s)).toBeCloseTo(1e-4, 12);
    expect(lrAt(9, s)).toBeCloseTo(1e-3, 12);
    expect(lrAt(10, s)).toBeCloseTo(1e-3, 12);
    expect(lrAt(60, s)).toBeCloseTo(0.55e-3, 12); // half way: (lr + minLr) / 2
    expect(lrAt(110, s)).toBe(1e-4);
    expect(lrAt(500, s)).toBe(1e-4);
    for (let k = 11; k < 110; k++) expect(lrAt(k, s)).toBeLessThan(lrAt(k - 1, s));
  });
  it('warmup-stable-decay: the peak held until stableSteps, then linear to minLr at totalSteps', () => {
    const w = { ...s, stableSteps: 90 };
    expect(lrAt(0, w)).toBeCloseTo(1e-4, 12);
    expect(lrAt(10, w)).toBe(1e-3);
    expect(lrAt(89, w)).toBe(1e-3);
    expect(lrAt(90, w)).toBe(1e-3);
    expect(lrAt(100, w)).toBeCloseTo(0.55e-3, 12); // half way through the anneal
    expect(lrAt(109, w)).toBeCloseTo(1e-3 - 0.95 * 0.9e-3, 12);
    expect(lrAt(110, w)).toBe(1e-4);
    // The run's schedule: the fraction of the decay length at the peak (0 = the cosine above).
    expect(runSchedule({ lr: 2e-3, minLr: 2e-5, warmupSteps: 50, stableFraction: 0.8 }, 1500)).toEqual(
      { lr: 2e-3, minLr: 2e-5, warmupSteps: 50, totalSteps: 1500, stableSteps: 1200 });
    expect(runSchedule({ lr: 1e-3, minLr: 1e-2, warmupSteps: 50, stableFraction: 0 }, 20)).toEqual(
      { lr: 1e-3, minLr: 1e-3, warmupSteps: 20, totalSteps: 20, stableSteps: 0 });
    expect(() => lrAt(0, { ...s, stableSteps: 5 })).toThrow(/stableSteps = 5/);
    expect(() => lrAt(0, { ...s, stableSteps: 111 })).toThrow(/stableSteps = 111/);
  });
  it('rejects bad schedules', () => {
    expect(() => lrAt(0, { ...s, minLr: 1 })).toThrow(/minLr/);
    expect(() => lrAt(-1, s)).toThrow(/step/);
    expect(() => lrAt(0, { ...s, totalSteps: 5 })).toThrow(/totalSteps/);
  });
});
