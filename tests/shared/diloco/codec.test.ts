// Codecs of DiLoCo rounds: round trips, the int8 error bound, sparse top-k + 2-bit values with
// error feedback summing to the dense deltas over rounds, fp16 rounding, wire validation.
import { describe, expect, it } from 'vitest';
import { CodecError, decode, encode, ErrorFeedback, packedBytes, sparseSum, validatePacked, DEFAULT_CODEC_PARAMS } from '../../../shared/diloco/codec.ts';
import { weightedMean } from '../../../shared/diloco/outer.ts';
import { fromHalf, toHalf } from '../../../shared/diloco/fp16.ts';
import { Rng } from '../../../shared/rng.ts';

function randomVec(n: number, seed: number, scale = 1e-2): Float32Array {
  const r = new Rng(seed);
  const x = new Float32Array(n);
  // Heavy-tailed like real deltas: a few large values among many small ones.
  for (let i = 0; i < n; i++) x[i] = (r.next() - 0.5) * scale * (r.next() < 0.02 ? 30 : 1);
  return x;
}

describe('codecs', () => {
  const n = 10_000 + 37; // not a multiple of blocks or chunks
  const x = randomVec(n, 1);

  it('none is exact', () => {
    expect(decode(encode(x, 'none'))).toEqual(x);
  });

  it('fp16 rounds to nearest even and round-trips halves exactly', () => {
    expect(fromHalf(toHalf(1))).toBe(1);
    expect(fromHalf(toHalf(65504))).toBe(65504);
    expect(fromHalf(toHalf(1e6))).toBe(Infinity);
    expect(fromHalf(toHalf(2 ** -24))).toBe(2 ** -24); // smallest subnormal
    expect(fromHalf(toHalf(1 + 2 ** -11))).toBe(1); // tie -> even
    expect(fromHalf(toHalf(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9); // tie -> even (up)
    for (let h = 0; h < 0x7c00; h += 7) expect(toHalf(fromHalf(h))).toBe(h);
    const d = decode(encode(x, 'fp16'));
    for (let i = 0; i < n; i++) expect(Math.abs(d[i] - x[i])).toBeLessThanOrEqual(Math.max(Math.abs(x[i]) * 2 ** -11, 2 ** -25));
  });

  it('int8 blockwise absmax: every value within half a step of its block', () => {
    const p = encode(x, 'int8');
    const d = decode(p);
    const B = DEFAULT_CODEC_PARAMS.block;
    for (let b = 0; b < Math.ceil(n / B); b++) {
      let m = 0;
      for (let i = b * B; i < Math.min(n, (b + 1) * B); i++) m = Math.max(m, Math.abs(x[i]));
      expect(p.scales![b]).toBe(Math.fround(m));
      for (let i = b * B; i < Math.min(n, (b + 1) * B); i++) expect(Math.abs(d[i] - x[i])).toBeLessThanOrEqual((m / 254) * (1 + 1e-5));
    }
    expect(packedBytes(p)).toBe(n + 4 * Math.ceil(n / B));
  });

  it('sparse keeps the top-k per chunk with the right signs, in ~2.3 bits + index per kept value', () => {
    const p = encode(x, 'sparse');
    const d = decode(p);
    const { chunk, topk } = DEFAULT_CODEC_PARAMS;
    for (let c = 0; c < Math.ceil(n / chunk); c++) {
      const lo = c * chunk;
      const len = Math.min(chunk, n - lo);
      const kept = [...Array(len).keys()].filter((i) => d[lo + i] !== 0);
      expect(kept.length).toBe(Math.min(topk, len));
      const minKept = Math.min(...kept.map((i) => Math.abs(x[lo + i])));
      const maxDropped = Math.max(0, ...[...Array(len).keys()].filter((i) => d[lo + i] === 0).map((i) => Math.abs(x[lo + i])));
      expect(minKept).toBeGreaterThanOrEqual(maxDropped);
      for (const i of kept) expect(Math.sign(d[lo + i])).toBe(Math.sign(x[lo + i]));
    }
    // 3 chunks of 64 kept values: uint16 index + 2 bits each, and two float32 levels per chunk.
    expect(packedBytes(p)).toBe(192 * 2 + 192 / 4 + 3 * 8);
    expect(packedBytes(p)).toBeLessThan((n * 4) / 80);
  });

  it('sparse error feedback: decoded vectors plus the residual sum to the dense deltas over rounds', () => {
    const ef = new ErrorFeedback(n);
    const sumDense = new Float64Array(n);
    const sumSent = new Float64Array(n);
    for (let round = 0; round < 20; round++) {
      const delta = randomVec(n, 100 + round);
      const p = ef.compress(delta, 'sparse');
      const d = decode(p);
      for (let i = 0; i < n; i++) {
        sumDense[i] += delta[i];
        sumSent[i] += d[i];
      }
    }
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs(sumSent[i] + ef.residual[i] - sumDense[i]));
      scale = Math.max(scale, Math.abs(sumDense[i]));
    }
    // Only float32 rounding of the residual updates separates them (20 rounds x ~1 ulp).
    expect(worst).toBeLessThan(scale * 20 * 2 ** -23 * 4);
    // And the feedback really carries mass over: the residual is not zero.
    expect(ef.residual.some((v) => v !== 0)).toBe(true);
  });

  it('error feedback across re-computed rounds: compressApart packs the delta alone and keeps the residual (the sum identity holds)', () => {
    // A round the coordinator re-computes (task.fresh) must pack its delta without the residual;
    // the worker used to reset the residual there, dropping ~98% of what it had learned (top-1.5%).
    const ef = new ErrorFeedback(n);
    const sumDense = new Float64Array(n);
    const sumSent = new Float64Array(n);
    for (let round = 0; round < 12; round++) {
      const delta = randomVec(n, 300 + round);
      const apart = round % 3 === 1;
      const before = new Float32Array(ef.residual);
      const p = apart ? ef.compressApart(delta, 'sparse') : ef.compress(delta, 'sparse');
      // Apart: exactly what a fresh residual would send (the coordinator's reference packs so).
      if (apart) expect(decode(p)).toEqual(decode(encode(delta, 'sparse')));
      if (apart) expect(ef.residual.some((v, i) => v !== before[i])).toBe(true);
      const d = decode(p);
      for (let i = 0; i < n; i++) (sumDense[i] += delta[i], sumSent[i] += d[i]);
    }
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs(sumSent[i] + ef.residual[i] - sumDense[i]));
      scale = Math.max(scale, Math.abs(sumDense[i]));
    }
    expect(worst).toBeLessThan(scale * 12 * 2 ** -23 * 4);
  });

  it('sparsesum decodes to the coordinator\'s -lr * token-weighted mean of the sparse deltas, bit for bit, in the parts\' bytes', () => {
    const parts = [encode(randomVec(n, 7), 'sparse'), encode(randomVec(n, 8), 'sparse'), encode(randomVec(n, 9), 'sparse')];
    const tokens = [37, 41, 12];
    const total = tokens.reduce((a, b) => a + b, 0);
    const g = weightedMean(parts.map((p, j) => ({ delta: decode(p), tokens: tokens[j] })), n);
    const want = Float32Array.from(g, (v) => -0.7 * v);
    const p = sparseSum(parts, tokens.map((t) => t / total), -0.7);
    expect(decode(p)).toEqual(want);
    expect(packedBytes(p)).toBe(parts.reduce((a, q) => a + packedBytes(q), 0) + 8 * parts.length);
    // Through the wire check: accepted as an update, never as a delta.
    const v = validatePacked(p, n, 'update');
    expect(decode(v)).toEqual(want);
    expect(() => validatePacked(p, n, 'delta', ['none', 'fp16', 'int8', 'sparse'])).toThrow(/codec "sparsesum"/);
    expect(() => validatePacked({ ...p, parts: [...parts, encode(randomVec(n, 1), 'int8')], coef: new Float64Array(4) }, n, 'update')).toThrow(/parts\[3\]: codec "int8"/);
    expect(() => validatePacked({ ...p, coef: new Float64Array(2) }, n, 'update')).toThrow(/coef: length 2, expected 3/);
    expect(() => validatePacked({ ...p, coef: Float64Array.from([1, NaN, 1]) }, n, 'update')).toThrow(/coef\[1\]/);
    expect(() => validatePacked({ ...p, scale: Infinity }, n, 'update')).toThrow(/scale/);
    expect(() => validatePacked({ ...p, parts: [] }, n, 'update')).toThrow(/parts: expected/);
    expect(() => sparseSum([encode(randomVec(n, 1), 'int8')], [1], 1)).toThrow(CodecError);
  });

  it('sparse32 is lossless: the sum of sparse deltas round-trips exactly in 6 B per nonzero', () => {
    // What the coordinator publishes with --compress sparse: -lr * mean of decoded sparse deltas.
    const a = decode(encode(randomVec(n, 5), 'sparse'));
    const b = decode(encode(randomVec(n, 6), 'sparse'));
    const u = Float32Array.from(a, (v, i) => -0.7 * (v + b[i]) / 2 + 0); // + 0: no -0 (decode writes +0)
    const p = encode(u, 'sparse32');
    expect(decode(p)).toEqual(u);
    const nonzero = u.filter((v) => v !== 0).length;
    expect(nonzero).toBeGreaterThan(0);
    expect(packedBytes(p)).toBe(6 * nonzero + 4 * Math.ceil(n / DEFAULT_CODEC_PARAMS.chunk));
    expect(validatePacked(p, n, 'update').codec).toBe('sparse32');
    // A worker never sends it: not a delta codec.
    expect(() => validatePacked(p, n, 'delta', ['none', 'fp16', 'int8', 'sparse'])).toThrow(/codec "sparse32"/);
    const idx = new Uint16Array(p.idx!);
    [idx[0], idx[1]] = [idx[1], idx[0]];
    expect(() => validatePacked({ ...p, idx }, n, 'update')).toThrow(/ascend/);
    const vals = new Float32Array(p.vals!);
    vals[3] = Infinity;
    expect(() => validatePacked({ ...p, vals }, n, 'update')).toThrow(/vals\[3\]/);
    const counts = new Uint32Array(p.counts!);
    counts[0] += 1;
    expect(() => validatePacked({ ...p, counts }, n, 'update')).toThrow(/idx: length/);
  });

  it('validatePacked accepts what encode makes and names the bad field otherwise', () => {
    for (const c of ['none', 'fp16', 'int8', 'sparse'] as const) expect(validatePacked(encode(x, c), n, 'delta').codec).toBe(c);
    const p = encode(x, 'sparse');
    expect(() => validatePacked({ ...p, idx: p.idx!.subarray(1) }, n, 'delta')).toThrow(/idx: length/);
    const idx = new Uint16Array(p.idx!);
    idx[idx.length - 1] = 60000;
    expect(() => validatePacked({ ...p, idx }, n, 'delta')).toThrow(/outside chunk/);
    expect(() => validatePacked({ ...encode(x, 'int8'), scales: new Float32Array(Math.ceil(n / 256)).fill(NaN) }, n, 'delta')).toThrow(CodecError);
    expect(() => validatePacked(encode(x, 'int8'), n + 1, 'delta')).toThrow(/n is/);
    expect(() => validatePacked({ codec: 'zip', n }, n, 'delta')).toThrow(/codec/);
    expect(() => validatePacked(encode(x, 'none'), n, 'delta', ['int8'])).toThrow(/codec "none"/);
  });
});
