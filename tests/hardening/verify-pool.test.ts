// The verification pool on its own: real worker threads running the CPU reference (started from
// TypeScript through coordinator/threads/ts-worker.ts), compared with results computed here.
import { afterAll, describe, expect, it } from 'vitest';
import { Verifier } from '../../coordinator/security/verify.ts';
import { VerifyPool } from '../../coordinator/security/verify-pool.ts';
import type { MicroBatch } from '../../shared/backend.ts';
import { CpuBackend } from '../../shared/model/cpu-backend.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';

const model = presetConfig('tiny');
const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const f of closers) await f();
});

function verifier(threads = 1): Verifier {
  const v = new Verifier(model, 0.05, threads);
  closers.push(() => v.close());
  return v;
}

function batch(B: number, T: number, seed = 1): MicroBatch {
  const inputs = new Int32Array(B * T).map((_, i) => (i * 7 + seed * 13) % 256);
  const targets = new Int32Array(B * T).map((_, i) => (i * 11 + seed * 5) % 256);
  return { B, T, inputs, targets, mask: new Uint8Array(B * T).fill(1) };
}

async function reference(params: Float32Array, b: MicroBatch): Promise<{ loss: number; grads: Float32Array }> {
  const cpu = new CpuBackend(model);
  await cpu.setParams(params);
  const r = await cpu.forwardBackward(b);
  return { loss: r.loss, grads: r.grads };
}

describe('verification threads', () => {
  it('an honest result matches; a sign-flipped or scaled one does not', async () => {
    const v = verifier();
    const p = initParameters(model, 3);
    const b = batch(4, 16);
    const r = await reference(p, b);
    const honest = await v.check(p, 0, b, r.loss, r.grads);
    expect(honest.ok).toBe(true);
    expect(honest.relErr).toBeLessThan(1e-6);
    expect(honest.lossErr).toBeLessThan(1e-6);
    const flipped = await v.check(p, 0, b, r.loss, r.grads.map((g) => -g));
    expect(flipped.ok).toBe(false);
    expect(flipped.relErr).toBeCloseTo(2, 5);
    const scaled = await v.check(p, 0, b, r.loss, r.grads.map((g) => 3 * g));
    expect(scaled.ok).toBe(false);
    expect(scaled.relErr).toBeCloseTo(2, 5);
    expect([v.checks, v.mismatches, v.paramCopies]).toEqual([3, 2, 1]);
  });

  it('checks use the version the worker computed at, copied once per version, though params change in place', async () => {
    const v = verifier();
    const p = initParameters(model, 4);
    const b = batch(4, 16, 2);
    const r0 = await reference(p, b);
    const first = v.check(p, 0, b, r0.loss, r0.grads);
    const second = v.check(p, 0, b, r0.loss, r0.grads);
    // An optimizer step updates the same array in place while version 0's checks are pending.
    for (let i = 0; i < p.length; i++) p[i] += 0.01 * Math.sin(i);
    const r1 = await reference(p, b);
    const third = v.check(p, 1, b, r1.loss, r1.grads);
    const got = await Promise.all([first, second, third]);
    expect(got.map((c) => c.ok)).toEqual([true, true, true]);
    expect(v.paramCopies).toBe(2);
    // And version 0's result checked against version 1's parameters fails: the copy matters.
    expect((await v.check(p, 1, b, r0.loss, r0.grads)).ok).toBe(false);
  });

  it("the caller's loop keeps running while a check computes", async () => {
    const v = verifier();
    const p = initParameters(model, 5);
    const b = batch(32, 64, 3);
    const grads = new Float32Array(p.length);
    let last = performance.now();
    let worstGap = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
    }, 10);
    const c = await v.check(p, 0, b, 1, grads);
    clearInterval(timer);
    expect(c.ms, 'the check must be long enough to show a stall').toBeGreaterThan(300);
    expect(worstGap).toBeLessThan(150);
  });

  it('a job that fails (wrong parameter count) fails alone; the thread goes on; close() fails pending checks', async () => {
    const v = verifier();
    const p = initParameters(model, 6);
    const b = batch(2, 8, 4);
    await expect(v.check(p.subarray(1), 0, b, 1, new Float32Array(p.length))).rejects.toMatchObject({ code: 'ERR_VERIFY' });
    expect(v.failures).toBe(1);
    const r = await reference(p, b);
    expect((await v.check(p, 1, b, r.loss, r.grads)).ok).toBe(true);
    const pending = v.check(p, 1, batch(32, 64, 5), r.loss, r.grads);
    const queued = v.check(p, 1, b, r.loss, r.grads);
    expect(v.pending).toBe(2);
    const outcomes = Promise.allSettled([pending, queued]);
    await v.close();
    const codes = (await outcomes).map((o) => (o.status === 'rejected' ? (o.reason as { code?: string }).code : 'resolved'));
    expect(codes).toEqual(['ERR_VERIFY_CLOSED', 'ERR_VERIFY_CLOSED']);
    await expect(v.check(p, 1, b, r.loss, r.grads)).rejects.toMatchObject({ code: 'ERR_VERIFY_CLOSED' });
  });

  it('--verify-threads 2 runs two checks at once', async () => {
    const pool = new VerifyPool(model, 2);
    closers.push(() => pool.close());
    const p = initParameters(model, 7);
    const buffer = new SharedArrayBuffer(p.byteLength);
    new Float32Array(buffer).set(p);
    const job = (s: number) => pool.run({ params: { key: 1, buffer }, batch: batch(16, 32, s), loss: 1, grads: new Float32Array(p.length) });
    const both = Promise.all([job(1), job(2)]);
    expect(pool.threads).toBe(2);
    expect(pool.pending).toBe(2);
    const [a, c] = await both;
    expect(a.relErr).toBeCloseTo(1, 6); // zero gradient against a non-zero reference
    expect(c.relErr).toBeCloseTo(1, 6);
    expect(pool.pending).toBe(0);
  });
});
