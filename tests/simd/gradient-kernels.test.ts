// The SIMD gradient kernels (shared/simd) against the JavaScript loops they replace: the fold and
// the scale give the same bits as aggregate.ts foldPending and the plain assignment, the sum of
// squares agrees with the float64 loop (to float64 rounding in sumsq, within its stated 3e-7 in
// the float32-blocked sumsq32 that the scan uses), finds a NaN/Inf wherever it is (chunk edges,
// the tail) and never calls a finite value non-finite (an overflowing block is summed again in
// float64), AdamW gives the bits of the reference loop (shared/optim/adamw.ts adamwRange), and the
// committed binaries are what the WAT text assembles to.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { foldPending, MeanAggregator } from '../../coordinator/train/aggregate.ts';
import { CHUNK, GradientKernels, kernelPages } from '../../shared/simd/gradient-kernels.ts';
import { gradientKernelsSource } from '../../shared/simd/build-gradient-kernels.ts';
import { sumOfSquares } from '../../shared/protocol/validate.ts';
import { Rng } from '../../shared/rng.ts';
import { adamwConstants, adamwRange, adamwStep, createAdamWState, DEFAULT_ADAMW } from '../../shared/optim/adamw.ts';

function randomGrad(n: number, seed: number, scale = 1e-2): Float32Array {
  const r = new Rng(seed);
  return new Float32Array(n).map(() => (r.next() - 0.5) * scale);
}

function jsSumOfSquares(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return s;
}

const LENGTHS = [1, 3, 4, 7, 8, 13, 4096, CHUNK - 1, CHUNK, CHUNK + 5, 3 * CHUNK + 7, 100_003];

describe('gradient kernels (WebAssembly SIMD)', () => {
  it('run here (Node has WebAssembly SIMD), and the committed binaries are the assembled WAT text', async () => {
    expect(GradientKernels.create(16)).not.toBeNull();
    expect(GradientKernels.create(16, 'shared')).not.toBeNull();
    const committed = readFileSync(new URL('../../shared/simd/gradient-kernels.wasm.ts', import.meta.url), 'utf8');
    expect(committed, 'run `npm run build:wasm` after editing gradient-kernels.wat.ts').toBe(await gradientKernelsSource());
  });

  it('fold of 1..4 results gives the bits of foldPending, tails and chunk edges included', () => {
    for (const n of LENGTHS) {
      for (let k = 1; k <= 6; k++) {
        const p = Array.from({ length: k }, (_, j) => ({ g: randomGrad(n, 100 * n + j), t: 1 + ((j * 37) % 500) + 0.25 * j }));
        const start = randomGrad(n, 7, 1);
        const want = Float64Array.from(start);
        for (let i = 0; i < k; i += 4) foldPending(want, p.slice(i, i + 4));
        const kern = GradientKernels.create(n)!;
        kern.acc.set(start);
        kern.fold(p);
        expect(Buffer.from(kern.acc.buffer, 0, n * 8).equals(Buffer.from(want.buffer)), `n=${n} k=${k}`).toBe(true);
        // scaleInto == out[i] = acc[i] * inv
        const out = new Float32Array(n);
        kern.scaleInto(out, 1 / 3000);
        const ref = new Float32Array(n);
        for (let i = 0; i < n; i++) ref[i] = want[i] * (1 / 3000);
        expect(Buffer.from(out.buffer).equals(Buffer.from(ref.buffer)), `scale n=${n}`).toBe(true);
      }
    }
  });

  it('sum of squares: exact within float64 rounding (sumsq), within 3e-7 blocked (sumsq32); non-finite iff a value is, wherever it sits', () => {
    const k = GradientKernels.create(0)!;
    const rel = (x: number, want: number) => Math.abs(x - want) / want;
    for (const n of [...LENGTHS, 31, 32, 33, 64 * 1024 + 17]) {
      for (const scale of [10, 1e-6]) {
        const a = randomGrad(n, n, scale);
        const want = jsSumOfSquares(a);
        expect(rel(k.sumOfSquaresExact(a), want), `exact n=${n}`).toBeLessThan(1e-12);
        expect(rel(k.sumOfSquares(a), want), `blocked n=${n}`).toBeLessThan(3e-7);
      }
      const a = randomGrad(n, n, 10);
      for (const pos of new Set([0, n - 1, Math.floor(n / 2), Math.min(n - 1, CHUNK), Math.min(n - 1, CHUNK - 1), Math.min(n - 1, 31)])) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const b = new Float32Array(a);
          b[pos] = bad;
          expect(Number.isFinite(k.sumOfSquares(b)), `${bad} at ${pos} of ${n}`).toBe(false);
          expect(Number.isFinite(k.sumOfSquaresExact(b)), `exact: ${bad} at ${pos} of ${n}`).toBe(false);
        }
      }
    }
    // Finite values whose float32 squares (or 8 of them in a lane) overflow are summed again in
    // float64: finite, within the same bound. 1e19's square fits a float32 (1e38), 3e19's does not.
    for (const big of [3.4e38, 3e19, 1e19]) {
      const a = randomGrad(3 * CHUNK + 40, 9, 1);
      a[CHUNK + 5] = big;
      a[2 * CHUNK + 40] = -big;
      const s = k.sumOfSquares(a);
      expect(Number.isFinite(s), `${big}`).toBe(true);
      expect(rel(s, jsSumOfSquares(a)), `${big}`).toBeLessThan(3e-7);
    }
    expect(Number.isFinite(k.sumOfSquares(new Float32Array(100_000).fill(3.4e38)))).toBe(true);
    // validateResult's scan uses the kernel from 4096 floats up; below, the loop: both agree.
    for (const n of [4095, 4096, 50_001]) {
      const a = randomGrad(n, 3 * n);
      expect(rel(sumOfSquares(a), jsSumOfSquares(a))).toBeLessThan(n < 4096 ? 1e-12 : 3e-7);
    }
  });

  it('scan: the sum of squares of sumOfSquares and a digest of the bytes: equal bytes, equal digest; any changed bit, length or key, another', () => {
    const k = GradientKernels.create(0)!;
    for (const n of [32, 33, 4096, CHUNK + 31, 2 * CHUNK + 64, 100_003]) {
      const a = randomGrad(n, n);
      const r = k.scan(a);
      expect(r.sumSquares).toBe(k.sumOfSquares(a));
      expect(r.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(k.scan(new Float32Array(a)).digest, `copy n=${n}`).toBe(r.digest); // bytes, not identity
      const seen = new Set([r.digest]);
      // One flipped bit anywhere (first, lanes, chunk edges, the tail) changes it.
      for (const pos of new Set([0, 1, 4, 7, 8, 31, Math.min(n - 1, CHUNK - 1), Math.min(n - 1, CHUNK), n - 1, Math.floor(n / 2)])) {
        for (const bit of [0, 17, 31]) {
          const b = new Float32Array(a);
          new Uint32Array(b.buffer)[pos] ^= 1 << bit;
          const d = k.scan(b).digest;
          expect(seen.has(d), `bit ${bit} at ${pos} of ${n}`).toBe(false);
          seen.add(d);
        }
      }
      // Two sign bits flipped in one lane (add and multiply alone kept the top bit linear: they
      // cancelled), two values swapped, and a shorter array with the same prefix differ too.
      const two = new Float32Array(a);
      two[0] = -two[0];
      two[8] = -two[8];
      expect(k.scan(two).digest, `two signs n=${n}`).not.toBe(r.digest);
      const sw = new Float32Array(a);
      [sw[0], sw[1]] = [sw[1], sw[0]];
      expect(k.scan(sw).digest).not.toBe(r.digest);
      expect(k.scan(a.subarray(0, n - 1)).digest).not.toBe(r.digest);
    }
    // All zeros of two lengths, and another instance's key: different digests.
    expect(k.scan(new Float32Array(4096)).digest).not.toBe(k.scan(new Float32Array(4128)).digest);
    const a = randomGrad(5000, 1);
    expect(GradientKernels.create(0)!.scan(a).digest).not.toBe(k.scan(a).digest);
    // A NaN: non-finite sum, as sumOfSquares; an overflowing finite block: re-summed in float64.
    const nan = randomGrad(5000, 2);
    nan[4999] = NaN;
    expect(Number.isFinite(k.scan(nan).sumSquares)).toBe(false);
    const big = randomGrad(5000, 3);
    big[100] = 3e19;
    expect(k.scan(big).sumSquares).toBe(k.sumOfSquares(big));
  });

  it('scanInto (staging): the sums and digest of scan, an exact copy at the source\'s phase in a shared memory\'s slot, and folds of those copies in place, or of misaligned sources, give foldPending\'s bits', () => {
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const n = 8 * CHUNK * 3 + 37; // three copy pieces (8 chunks each) and a tail of 37
    const pages = kernelPages(n, 2);
    const scanner = GradientKernels.create(0)!;
    const k = GradientKernels.create(n, 'shared', new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }), { keysOf: scanner })!;
    // At byte offsets a msgpack header can leave (100, 104: 4 and 0 modulo 8) and 0, 4.
    const src = [0, 4, 100, 104].map((off, j) => {
      const a = new Float32Array(new ArrayBuffer(n * 4 + 128), off, n);
      a.set(randomGrad(n, 900 + j));
      return a;
    });
    for (const a of src) {
      const at = k.stagingOffset(1, a);
      expect(at % 4096, `offset ${a.byteOffset}`).toBe((a.byteOffset + 2112) % 4096);
      k.view(at, n).fill(0);
      const r = k.scanInto(a, at, true);
      expect(r.sumSquares).toBe(scanner.sumOfSquares(a));
      expect(r.digest).toBe(scanner.scan(a).digest); // one key: digests compare across paths
      expect(bytes(k.view(at, n)).equals(bytes(a)), `copy of offset ${a.byteOffset}`).toBe(true);
      expect(k.scanInto(a, at, false)).toEqual({ sumSquares: scanner.sumOfSquares(a) });
    }
    const nan = new Float32Array(src[2]);
    nan[n - 1] = NaN;
    expect(Number.isFinite(k.scanInto(nan, k.stagingOffset(0, nan), false).sumSquares)).toBe(false);
    expect(() => k.scanInto(src[0], 0, false)).toThrow(RangeError); // the accumulator is no slot
    expect(() => k.scanInto(src[0], k.slotAt(2), false)).toThrow(RangeError); // past the memory
    // Two staged copies folded in place, the misaligned sources through the scratch, and a mix:
    // every way the same float64 operations in the same order as foldPending.
    const [a, b] = [src[2], src[3]];
    const va = k.view(k.stagingOffset(0, a), n);
    const vb = k.view(k.stagingOffset(1, b), n);
    k.scanInto(a, va.byteOffset, false);
    k.scanInto(b, vb.byteOffset, false);
    const want = new Float64Array(n);
    foldPending(want, [{ g: a, t: 3 }, { g: b, t: 5.5 }]);
    for (const [name, p] of [['in place', [va, vb]], ['misaligned sources', [a, b]], ['mixed', [va, b]]] as const) {
      k.acc.fill(0);
      k.fold([{ g: p[0], t: 3 }, { g: p[1], t: 5.5 }]);
      expect(Buffer.from(k.acc.buffer, 0, n * 8).equals(Buffer.from(want.buffer)), name).toBe(true);
    }
  });

  it('the streaming mean (kernels) equals the JavaScript fold bit for bit over an uneven number of results', () => {
    const n = 2 * CHUNK + 11;
    const grads = Array.from({ length: 11 }, (_, i) => randomGrad(n, 500 + i));
    const tokens = grads.map((_, i) => 17 + 13 * i);
    const agg = new MeanAggregator(n);
    agg.begin(0);
    grads.forEach((g, i) => agg.add(g, tokens[i], `w${i}`));
    const got = new Float32Array(n);
    expect(agg.finish(got)).toBe(tokens.reduce((a, b) => a + b, 0));
    const acc = new Float64Array(n);
    for (let i = 0; i < grads.length; i += 4) foldPending(acc, grads.slice(i, i + 4).map((g, j) => ({ g, t: tokens[i + j] })));
    const inv = 1 / tokens.reduce((a, b) => a + b, 0);
    const want = new Float32Array(n);
    for (let i = 0; i < n; i++) want[i] = acc[i] * inv;
    expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it('AdamW: the bits of the reference loop, with and without a decay mask, over steps, tails and chunk edges', () => {
    const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const k = GradientKernels.create(0)!;
    for (const n of [4, 7, 4096, CHUNK + 5, 3 * CHUNK + 7]) {
      for (const masked of [false, true]) {
        const r = new Rng(n + (masked ? 1 : 0));
        // Mask bytes other than 0/1 too: the loop decays on any non-zero byte.
        const decay = masked ? new Uint8Array(n).map(() => [0, 1, 1, 2, 255][Math.floor(r.next() * 5)]) : null;
        const pK = randomGrad(n, n + 11, 2);
        const mK = randomGrad(n, n + 12, 1e-3);
        const vK = randomGrad(n, n + 13, 1e-5).map(Math.abs);
        const [pJ, mJ, vJ] = [pK, mK, vK].map((a) => new Float32Array(a));
        for (let step = 1; step <= 3; step++) {
          // Values of every size, zeros and large ones included.
          const g = randomGrad(n, 1000 * step + n, [1e-3, 10, 1e-8][step - 1]);
          g[0] = 0;
          if (n > 5) g[5] = 3e4;
          const c = adamwConstants(DEFAULT_ADAMW, 3e-3, step);
          const done = k.adamw(pK, g, mK, vK, decay, c);
          expect(done).toBe(n - (n % 4));
          adamwRange(pK, g, mK, vK, decay, c, done, n);
          adamwRange(pJ, g, mJ, vJ, decay, c, 0, n);
          expect(bits(pK).equals(bits(pJ)), `params, n ${n}, step ${step}, mask ${masked}`).toBe(true);
          expect(bits(mK).equals(bits(mJ)), `m, n ${n}, step ${step}`).toBe(true);
          expect(bits(vK).equals(bits(vJ)), `v, n ${n}, step ${step}`).toBe(true);
        }
        expect(bits(pK).equals(bits(randomGrad(n, n + 11, 2)))).toBe(false); // it did update
      }
    }
    // adamwStep takes the kernel from 4,096 values on: the same bits as the loop over everything.
    const n = 2 * CHUNK + 3;
    const p = randomGrad(n, 5, 1);
    const pRef = new Float32Array(p);
    const state = createAdamWState(n);
    const g = randomGrad(n, 6, 1e-2);
    const decay = new Uint8Array(n).map((_, i) => i % 3 === 0 ? 1 : 0);
    adamwStep(p, g, state, 1e-3, DEFAULT_ADAMW, decay);
    const mRef = new Float32Array(n), vRef = new Float32Array(n);
    adamwRange(pRef, g, mRef, vRef, decay, adamwConstants(DEFAULT_ADAMW, 1e-3, 1), 0, n);
    expect(bits(p).equals(bits(pRef))).toBe(true);
    expect(bits(state.m).equals(bits(mRef))).toBe(true);
    expect(bits(state.v).equals(bits(vRef))).toBe(true);
  });
});
