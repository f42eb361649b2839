// `npm run bench:optimizer [-- --params N --reps R]`: the coordinator's AdamW update (sync mode,
// once per step, in the event loop) for GPT-2 small's parameter count by default: the SIMD kernel
// (shared/simd adamw, what adamwStep runs) against the JavaScript loop it reproduces bit for bit
// (adamwRange), with memcpy of the parameters (a Float32Array.set) as the floor, all measured in
// this run. Prints a table, then as the last line one JSON object:
// { params, loopMs, kernelMs, speedup, memcpyMs, sameBits }.

import { parseArgs } from 'node:util';
import { AppError } from '../shared/errors.ts';
import { adamwConstants, adamwRange, adamwStep, createAdamWState, DEFAULT_ADAMW } from '../shared/optim/adamw.ts';
import { parameterCount, presetConfig } from '../shared/model/config.ts';

function filled(n: number, seed: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return a;
}

function main(): void {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { params: { type: 'string' }, reps: { type: 'string' } }, strict: true });
  const n = Number(values.params ?? parameterCount(presetConfig('gpt2')));
  if (!Number.isInteger(n) || n < 4096 || n > 500_000_000) throw new AppError('ERR_BENCH_ARGS', `bench:optimizer: --params must be an integer in [4096, 5e8], got "${values.params}"`);
  const reps = Number(values.reps ?? 3);
  if (!Number.isInteger(reps) || reps < 1 || reps > 100) throw new AppError('ERR_BENCH_ARGS', `bench:optimizer: --reps must be an integer in [1, 100], got "${values.reps}"`);
  const grads = filled(n, 1, 1e-2);
  const decay = new Uint8Array(n).map((_, i) => (i % 5 < 3 ? 1 : 0));
  const pK = filled(n, 2, 1);
  const pJ = new Float32Array(pK);
  const sK = createAdamWState(n);
  const sJ = createAdamWState(n);
  const dst = new Float32Array(n);
  dst.set(pK);
  const h = DEFAULT_ADAMW;
  let loopMs = Infinity;
  let kernelMs = Infinity;
  let memcpyMs = Infinity;
  // Alternating, so both see the same machine; both sides take the same steps (same bits after).
  for (let r = 0; r < reps; r++) {
    let t = performance.now();
    dst.set(pK);
    memcpyMs = Math.min(memcpyMs, performance.now() - t);
    const c = adamwConstants(h, 3e-4, sK.step + 1);
    t = performance.now();
    adamwStep(pK, grads, sK, 3e-4, h, decay);
    kernelMs = Math.min(kernelMs, performance.now() - t);
    t = performance.now();
    adamwRange(pJ, grads, sJ.m, sJ.v, decay, c, 0, n);
    loopMs = Math.min(loopMs, performance.now() - t);
  }
  const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));
  const sameBits = same(pK, pJ) && same(sK.m, sJ.m) && same(sK.v, sJ.v);
  const r1 = (x: number) => Math.round(x * 10) / 10;
  const out = { params: n, loopMs: r1(loopMs), kernelMs: r1(kernelMs), speedup: r1(loopMs / kernelMs), memcpyMs: r1(memcpyMs), sameBits };
  process.stdout.write(`AdamW on ${n.toLocaleString('en')} parameters (best of ${reps}): JavaScript loop ${out.loopMs} ms, SIMD kernel ${out.kernelMs} ms (${out.speedup}x), memcpy of the parameters ${out.memcpyMs} ms; same bits: ${sameBits}\n`);
  process.stdout.write(JSON.stringify(out) + '\n');
  if (!sameBits) process.exitCode = 1;
}

try {
  main();
} catch (e) {
  // Bad arguments (ERR_BENCH_ARGS) or a failure: the named code on stderr and exit 2, as bench:ingest.
  process.stderr.write(`${(e as { code?: string }).code ?? 'ERR'}: ${(e as Error).message}\n`);
  process.exit(2);
}
