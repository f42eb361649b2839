// CpuBackend through the TrainingBackend interface: results equal CpuGpt's, stats are computed
// from the grads, token-weighted halves combine to the whole batch.
import { describe, expect, it } from 'vitest';
import type { MicroBatch } from '../../../shared/backend.ts';
import { PRESETS } from '../../../shared/model/config.ts';
import { createCpuBackend, gradStats } from '../../../shared/model/cpu-backend.ts';
import { initParameters } from '../../../shared/model/init.ts';

const config = PRESETS.tiny;
const params = initParameters(config, 3);

function batch(B: number, T: number, first = 0): MicroBatch {
  const n = B * T;
  const inputs = new Int32Array(n).map((_, i) => (first * T + i) % 256);
  const targets = new Int32Array(n).map((_, i) => (first * T + i + 1) % 256);
  const mask = new Uint8Array(n).map((_, i) => ((first * T + i) % 5 === 0 ? 0 : 1));
  return { B, T, inputs, targets, mask };
}

describe('CpuBackend', () => {
  it('forwardBackward: loss, tokens, gradNorm, nonFinite and timings', async () => {
    const be = createCpuBackend(config);
    expect(be.name).toBe('cpu');
    await expect(be.forward(batch(1, 8))).rejects.toMatchObject({ code: 'ERR_NO_PARAMS' });
    await be.setParams(params);
    const r = await be.forwardBackward(batch(2, 8));
    expect(r.tokens).toBe(batch(2, 8).mask.reduce((a, b) => a + b, 0));
    expect(r.loss).toBeGreaterThan(4);
    expect(r.loss).toBeLessThan(7);
    expect(r.gradNorm).toBeCloseTo(gradStats(r.grads).gradNorm, 10);
    expect(r.gradNorm).toBeGreaterThan(0);
    expect(r.nonFinite).toBe(0);
    expect(r.timings.totalMs).toBeGreaterThanOrEqual((r.timings.forwardMs ?? 0));
    const f = await be.forward(batch(2, 8));
    expect(f.loss).toBe(r.loss);
    expect(f.logits.length).toBe(2 * 8 * config.vocabSize);
  });

  it('keeps its own copy of the parameters', async () => {
    const be = createCpuBackend(config);
    const p = new Float32Array(params);
    await be.setParams(p);
    const a = await be.forward(batch(1, 8));
    p.fill(0);
    expect((await be.forward(batch(1, 8))).loss).toBe(a.loss);
  });

  it('token-weighted mean of two half batches equals the whole batch', async () => {
    const be = createCpuBackend(config);
    await be.setParams(params);
    const whole = await be.forwardBackward(batch(4, 8));
    const h1 = await be.forwardBackward(batch(2, 8, 0));
    const h2 = await be.forwardBackward(batch(2, 8, 2));
    const n = h1.tokens + h2.tokens;
    expect(n).toBe(whole.tokens);
    expect((h1.loss * h1.tokens + h2.loss * h2.tokens) / n).toBeCloseTo(whole.loss, 6);
    let err = 0;
    for (let i = 0; i < whole.grads.length; i++) {
      err = Math.max(err, Math.abs((h1.grads[i] * h1.tokens + h2.grads[i] * h2.tokens) / n - whole.grads[i]));
    }
    expect(err).toBeLessThan(1e-6);
  });

  it('counts non-finite gradients', () => {
    expect(gradStats(Float32Array.of(3, NaN, 4, Infinity))).toEqual({ gradNorm: 5, nonFinite: 2 });
  });

  it('rejects wrong-size parameters and use after dispose', async () => {
    const be = createCpuBackend(config);
    await expect(be.setParams(new Float32Array(10))).rejects.toMatchObject({ code: 'ERR_PARAM_SIZE' });
    await be.setParams(params);
    be.dispose();
    await expect(be.forwardBackward(batch(1, 4))).rejects.toMatchObject({ code: 'ERR_BACKEND_DISPOSED' });
  });
});
