// bench:kernels' pass/fail: output elements are checked at a random sample, not only C[0], and
// the exit verdict fails when our engine or a requested peer failed, was absent or was wrong.
import { describe, expect, it } from 'vitest';
import { matmulInputs, referenceElement, wrongProbes, PROBES } from '../../bench/inputs.ts';
import { matmulVerdict, stepVerdict, type CheckedRow } from '../../bench/verdict.ts';
import type { MatmulShape } from '../../bench/shapes.ts';

/** C = op(A) op(B) in float32 on the CPU: what a correct kernel returns. */
function cpuMatmul(s: MatmulShape, a: Float32Array, b: Float32Array): Float32Array {
  const c = new Float32Array(s.m * s.n);
  for (let i = 0; i < s.m; i++) for (let j = 0; j < s.n; j++) c[i * s.n + j] = referenceElement(s, a, b, i, j);
  return c;
}

describe('bench:kernels output check', () => {
  const shape: MatmulShape = { label: 'odd TN', m: 37, n: 29, k: 23, transA: true, transB: false };

  it('samples C[0], the last element and random ones; a right C passes', () => {
    const x = matmulInputs(shape, 7);
    expect(x.probes.length).toBe(PROBES + 2);
    expect(x.probes.map((p) => p.index)).toContain(0);
    expect(x.probes.map((p) => p.index)).toContain(shape.m * shape.n - 1);
    const c = cpuMatmul(shape, x.a, x.b);
    expect(wrongProbes(shape, x.probes, x.probes.map((p) => c[p.index]))).toEqual([]);
    // Another seed probes other elements.
    expect(matmulInputs(shape, 8).probes.map((p) => p.index)).not.toEqual(x.probes.map((p) => p.index));
  });

  it('a kernel right at C[0] and wrong elsewhere is caught', () => {
    const x = matmulInputs(shape, 7);
    const c = cpuMatmul(shape, x.a, x.b);
    for (let i = 1; i < c.length; i++) c[i] += 0.5; // e.g. edge tiles or a transpose gone wrong
    const wrong = wrongProbes(shape, x.probes, x.probes.map((p) => c[p.index]));
    expect(wrong.length).toBe(x.probes.length - 1);
    expect(wrong[0]).toMatch(/^C\[\d+,\d+\]=/);
  });
});

describe('bench:kernels verdict', () => {
  const ok: CheckedRow = { check: { ours: 'ok', tfjs: 'ok', jax: 'ok' }, skipped: [] };

  it('all requested subjects ran and were right: no failure; unrequested peers are named', () => {
    expect(matmulVerdict([ok, ok], { ours: null, tfjs: null, jax: null }).failures).toEqual([]);
    const v = matmulVerdict([{ check: { ours: 'ok' }, skipped: [] }], { ours: null });
    expect(v.failures).toEqual([]);
    expect(v.ran).toMatchObject({ tfjs: 'not requested', jax: 'not requested' });
  });

  it('our engine failing to build, or a shape without our result, fails the run', () => {
    expect(matmulVerdict([{ check: { ours: 'FAILED', tfjs: 'ok' }, skipped: [] }], { ours: null, tfjs: null }).failures.join()).toMatch(/ours failed on 1/);
    expect(matmulVerdict([{ check: { tfjs: 'ok' }, skipped: [] }], { ours: null, tfjs: null }).failures.join()).toMatch(/ours has no result for 1/);
    expect(matmulVerdict([{ check: {}, skipped: ['ours'] }], { ours: null }).failures.join()).toMatch(/ours ran no matmul shape/);
  });

  it('a requested peer that is unavailable or wrong fails the run', () => {
    const v = matmulVerdict([{ check: { ours: 'ok', tfjs: 'ok' }, skipped: [] }], { ours: null, tfjs: null, jax: 'not available: no WebGPU device' });
    expect(v.failures).toEqual(['jax not available: no WebGPU device']);
    expect(matmulVerdict([{ check: { ours: 'ok', tfjs: 'MISMATCH' }, skipped: [] }], { ours: null, tfjs: null }).failures.join()).toMatch(/tfjs computed 1 matmul shape\(s\) wrong/);
  });

  it('a step that did not run for ours or a requested peer, or losses that disagree, fail the run', () => {
    const requested = { ours: null, tfjs: null };
    const v = matmulVerdict([ok], requested);
    stepVerdict({ oursMs: null, tfjsMs: 3, jaxMs: null, lossesAgree: true }, requested, v.ran, v.failures);
    expect(v.failures).toEqual(['ours training step did not run (see notes)']);
    expect(v.ran.ours).toMatch(/step: FAILED/);
    const w = matmulVerdict([ok], requested);
    stepVerdict({ oursMs: 2, tfjsMs: 3, jaxMs: null, lossesAgree: false }, requested, w.ran, w.failures);
    expect(w.failures).toEqual(['step losses disagree with the CPU reference']);
  });
});
