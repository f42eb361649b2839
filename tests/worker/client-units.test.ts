// Unit tests for the environment-neutral worker pieces that need no server: reconnect backoff,
// fault injectors.
import { describe, it, expect } from 'vitest';
import { Backoff } from '../../worker-web/client/backoff.ts';
import { parseFault, formatFault, corruptGradient, garbageMessages, GARBAGE_KINDS } from '../../worker-web/client/faults.ts';
import { l2Norm as l2norm } from '../../shared/optim/clip.ts';
import { Rng } from '../../shared/rng.ts';
import { validateResult } from '../../shared/protocol/validate.ts';

describe('Backoff', () => {
  it('grows exponentially up to the cap, jittered within [ceil*(1-j), ceil]', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 }, 7);
    const ceilings = [100, 200, 400, 800, 1000, 1000];
    for (const c of ceilings) {
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(c * 0.5);
      expect(d).toBeLessThanOrEqual(c);
    }
    b.reset();
    const d = b.next();
    expect(d).toBeLessThanOrEqual(100);
  });
  it('different seeds spread the crowd; the same seed repeats', () => {
    const seq = (s: number) => {
      const b = new Backoff({ baseMs: 1000, maxMs: 8000, factor: 2, jitter: 1 }, s);
      return [b.next(), b.next(), b.next()];
    };
    expect(seq(1)).toEqual(seq(1));
    expect(seq(1)).not.toEqual(seq(2));
  });
  it('rejects nonsense options', () => {
    expect(() => new Backoff({ baseMs: 0, maxMs: 1, factor: 2, jitter: 0 })).toThrow(/backoff/);
    expect(() => new Backoff({ baseMs: 10, maxMs: 5, factor: 2, jitter: 0 })).toThrow(/backoff/);
  });
});

describe('faults', () => {
  it('parses every documented form and round-trips it', () => {
    for (const s of ['none', 'sign-flip', 'scale:10', 'scale:-0.5', 'nan', 'random', 'stale', 'garbage', 'slow:250']) {
      expect(formatFault(parseFault(s))).toBe(s);
    }
  });
  it('refuses unknown or malformed faults', () => {
    for (const bad of ['flip', 'scale:', 'scale:0', 'scale:abc', 'slow:-1', 'slow:1.5', 'scale:Infinity', '']) {
      expect(() => parseFault(bad)).toThrow(/--fault/);
    }
  });

  const honest = () => {
    const rng = new Rng(3);
    const g = new Float32Array(1000);
    for (let i = 0; i < g.length; i++) g[i] = rng.normal() * 0.01;
    return { grads: g, gradNorm: l2norm(g), nonFinite: 0 };
  };

  it('sign-flip negates every entry and keeps the norm', () => {
    const h = honest();
    const orig = h.grads.slice();
    const r = corruptGradient({ kind: 'sign-flip' }, h, new Rng(1));
    for (let i = 0; i < orig.length; i++) expect(r.grads[i]).toBe(-orig[i]);
    expect(r.gradNorm).toBeCloseTo(l2norm(orig), 6);
  });
  it('scale:K multiplies and reports |K| x norm', () => {
    const h = honest();
    const n0 = h.gradNorm;
    const r = corruptGradient({ kind: 'scale', factor: -3 }, h, new Rng(1));
    expect(r.gradNorm).toBeCloseTo(3 * n0, 4);
  });
  it('nan plants NaNs and lies about them', () => {
    const r = corruptGradient({ kind: 'nan' }, honest(), new Rng(1));
    const nans = r.grads.reduce((a, v) => a + (Number.isNaN(v) ? 1 : 0), 0);
    expect(nans).toBeGreaterThan(0);
    expect(r.nonFinite).toBe(0);
    expect(Number.isFinite(r.gradNorm)).toBe(true);
  });
  it('random replaces the gradient with noise of the same norm', () => {
    const h = honest();
    const orig = h.grads.slice();
    const n0 = h.gradNorm;
    const r = corruptGradient({ kind: 'random' }, h, new Rng(5));
    expect(r.gradNorm).toBeCloseTo(n0, 4);
    let dot = 0;
    for (let i = 0; i < orig.length; i++) dot += orig[i] * r.grads[i];
    // Independent noise is nearly orthogonal to the honest gradient (cosine ~ N(0, 1/sqrt(1000))).
    expect(Math.abs(dot / (n0 * r.gradNorm))).toBeLessThan(0.2);
  });
  it('behavioural faults leave the gradient alone', () => {
    for (const f of [{ kind: 'stale' }, { kind: 'garbage' }, { kind: 'slow', ms: 5 }, { kind: 'none' }] as const) {
      const h = honest();
      const orig = h.grads.slice();
      const r = corruptGradient(f, h, new Rng(1));
      expect(Array.from(r.grads)).toEqual(Array.from(orig));
    }
  });
  it('garbage cycles through the whole catalog, every message malformed', () => {
    const ok = { taskId: 't1', step: 2, version: 3, loss: 1.2, tokens: 10, grads: new Float32Array([1, 2, 3, 4]), gradNorm: 5.4, nonFinite: 0, timings: { totalMs: 3 } };
    expect(validateResult(ok, { paramCount: 4 }).ok).toBe(true);
    const msgs = garbageMessages(ok, 'result', GARBAGE_KINDS, new Rng(1));
    expect(new Set(msgs.map((m) => m.label)).size).toBe(GARBAGE_KINDS);
    // Lease-level lies pass the schema and must be caught by the coordinator's lease table.
    const leaseLevel = new Set(['unknown-task', 'future-version', 'unknown-event']);
    for (const m of msgs) {
      expect(m.payload).not.toEqual(ok);
      if (!leaseLevel.has(m.label)) expect(validateResult(m.payload, { paramCount: 4 }).ok, m.label).toBe(false);
    }
  });
});
