// Compression of the vectors DiLoCo rounds send (docs/diloco.md): a worker's pseudo-gradient
// (delta = theta_start - theta_end) and the coordinator's published weight update.
//
//   none    float32 as is                                  4 B/value
//   fp16    IEEE binary16, round to nearest even           2 B/value
//   int8    blockwise absmax: per block of `block` values one float32 scale s = max|x|; q =
//           round(127 x / s) in [-127, 127]. |x - x^| <= s / 254 (half a step) + float rounding.
//                                                          1 + 4/block B/value
//   sparse  top-k per chunk: in each chunk of `chunk` values the `k` largest |x|, their in-chunk
//           index (uint16) and a 2-bit value (sign + big/small): small ones decode to the mean |x|
//           of the chosen below the chunk's median chosen |x|, big ones to the mean of the rest
//           (two float32 levels per chunk). What is not sent stays in the sender's ErrorFeedback
//           residual and is added to the next round's vector (SparseLoCo).
//                                                          ~k/chunk * 2.25 + 8/chunk B/value
//   sparse32  lossless for vectors with few nonzeros: per chunk the count of nonzero values, their
//           in-chunk indices (uint16) and float32 values. Not a --compress choice: the coordinator
//           publishes the SparseLoCo outer step with it (the aggregate of sparse deltas is sparse:
//           its support is the union of theirs), so workers and coordinator hold the same weights.
//                                                          6 B/nonzero + 4/chunk B/value
//   sparsesum  the same SparseLoCo step as the workers' packed sparse deltas themselves: `parts`
//           (each a sparse vector), `coef` (float64, one per part) and `scale`; decodes to
//           float32(scale * sum_j coef_j * decode(part_j)), summed in float64 in part order: the
//           arithmetic of the coordinator's token-weighted mean and outer step, so the worker's
//           weights stay bit-identical. Costs the parts' bytes (2.25 B per kept value): with K
//           workers K * k entries against sparse32's 6 B per nonzero of the union (up to K * k).
//           The coordinator publishes whichever of the two is smaller.
//
// Packed vectors are plain objects of typed arrays (msgpack carries them raw); validatePacked()
// checks one from the wire (lengths, index ranges, finiteness) before decode() trusts it.
// Why this file is long: each codec's encode, decode and wire check sit side by side, so the
// wire format of a packed vector is defined in one place (a change to one codec touches all three).

import { decodeHalf, encodeHalf } from './fp16.ts';

/** What a worker's delta may be packed with (--compress). */
export const DELTA_CODECS = ['none', 'fp16', 'int8', 'sparse'] as const;
/** Every packed form: the deltas' and sparse32 (published SparseLoCo updates only). */
export const CODECS = [...DELTA_CODECS, 'sparse32', 'sparsesum'] as const;
export type CodecName = (typeof CODECS)[number];

export interface CodecParams {
  /** int8: values per absmax block. */
  block: number;
  /** sparse: values per top-k chunk (<= 65536: indices are uint16). */
  chunk: number;
  /** sparse: values kept per chunk. */
  topk: number;
}

/** int8 blocks of 256; sparse keeps 64 of every 4096 values (1.56%, SparseLoCo's ~1.5%). */
export const DEFAULT_CODEC_PARAMS: CodecParams = { block: 256, chunk: 4096, topk: 64 };

export interface PackedVector {
  codec: CodecName;
  /** Length of the dense vector. */
  n: number;
  /** none */
  f32?: Float32Array;
  /** fp16 */
  f16?: Uint16Array;
  /** int8: quantised values (n) and one scale per block. */
  q?: Int8Array;
  scales?: Float32Array;
  block?: number;
  /** sparse: per chunk `k` in-chunk indices (the last chunk may keep fewer: min(k, its length)). */
  idx?: Uint16Array;
  /** sparse: 2-bit codes, 4 per byte (bit 1: negative, bit 0: big), in idx order. */
  codes?: Uint8Array;
  /** sparse: [small, big] magnitude per chunk. */
  levels?: Float32Array;
  /** sparse32: nonzero values per chunk; idx holds their in-chunk indices (ascending), vals the values. */
  counts?: Uint32Array;
  vals?: Float32Array;
  chunk?: number;
  k?: number;
  /** sparsesum: the sparse parts, their float64 coefficients and the common scale. */
  parts?: PackedVector[];
  coef?: Float64Array;
  scale?: number;
}

/** Most parts a sparsesum vector may carry (one per worker of a round). */
export const MAX_SUM_PARTS = 1024;

export class CodecError extends Error {
  readonly code = 'ERR_CODEC';
}

/** Bytes of the typed arrays of a packed vector (what it costs on the wire, headers aside). */
export function packedBytes(p: PackedVector): number {
  let b = 0;
  for (const a of [p.f32, p.f16, p.q, p.scales, p.idx, p.codes, p.levels, p.counts, p.vals, p.coef]) if (a) b += a.byteLength;
  for (const q of p.parts ?? []) b += packedBytes(q);
  return b;
}

function checkParams(c: CodecParams): void {
  if (!Number.isInteger(c.block) || c.block < 1) throw new CodecError(`codec: block must be a positive integer, got ${c.block}`);
  if (!Number.isInteger(c.chunk) || c.chunk < 1 || c.chunk > 65536) throw new CodecError(`codec: chunk must be an integer in [1, 65536], got ${c.chunk}`);
  if (!Number.isInteger(c.topk) || c.topk < 1 || c.topk > c.chunk) throw new CodecError(`codec: topk must be an integer in [1, chunk], got ${c.topk}`);
}

/** Values kept by the sparse codec in a chunk of `len` values. */
function keptIn(len: number, k: number): number {
  return Math.min(k, len);
}

/** Total indices of a sparse vector of n values. */
export function sparseCount(n: number, chunk: number, k: number): number {
  const full = Math.floor(n / chunk);
  return full * k + keptIn(n - full * chunk, k) * (n % chunk ? 1 : 0);
}

export function encode(x: Float32Array, codec: CodecName, params: CodecParams = DEFAULT_CODEC_PARAMS): PackedVector {
  checkParams(params);
  const n = x.length;
  switch (codec) {
    case 'none':
      return { codec, n, f32: new Float32Array(x) };
    case 'fp16':
      return { codec, n, f16: encodeHalf(x) };
    case 'int8':
      return encodeInt8(x, params.block);
    case 'sparse':
      return encodeSparse(x, params.chunk, params.topk);
    case 'sparse32':
      return encodeSparse32(x, params.chunk);
    case 'sparsesum':
      throw new CodecError('codec: sparsesum is built from packed sparse vectors (sparseSum), not encoded from a dense one');
    default:
      throw new CodecError(`codec: unknown codec ${JSON.stringify(codec)}; allowed: ${CODECS.join(', ')}`);
  }
}

function encodeInt8(x: Float32Array, block: number): PackedVector {
  const n = x.length;
  const nb = Math.ceil(n / block);
  const q = new Int8Array(n);
  const scales = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const lo = b * block;
    const hi = Math.min(n, lo + block);
    let m = 0;
    for (let i = lo; i < hi; i++) {
      const a = Math.abs(x[i]);
      if (a > m) m = a;
    }
    scales[b] = m;
    if (m === 0) continue;
    const s = 127 / m;
    for (let i = lo; i < hi; i++) q[i] = Math.max(-127, Math.min(127, Math.round(x[i] * s)));
  }
  return { codec: 'int8', n, q, scales, block };
}

function encodeSparse(x: Float32Array, chunk: number, k: number): PackedVector {
  const n = x.length;
  const nc = Math.ceil(n / chunk);
  const total = sparseCount(n, chunk, k);
  const idx = new Uint16Array(total);
  const codes = new Uint8Array(Math.ceil(total / 4));
  const levels = new Float32Array(2 * nc);
  const mags = new Float32Array(chunk);
  const order = new Uint32Array(chunk);
  let at = 0;
  for (let c = 0; c < nc; c++) {
    const lo = c * chunk;
    const len = Math.min(chunk, n - lo);
    const kk = keptIn(len, k);
    // The kk largest |x|: sort positions by magnitude, descending (ties: lower index first).
    for (let i = 0; i < len; i++) {
      mags[i] = Math.abs(x[lo + i]);
      order[i] = i;
    }
    const ord = order.subarray(0, len).sort((a, b) => mags[b] - mags[a] || a - b);
    const chosen = ord.slice(0, kk).sort();
    // Big/small split at the median chosen magnitude.
    const byMag = Array.from(chosen, (i) => mags[i]).sort((a, b) => a - b);
    const t = byMag[Math.floor(kk / 2)];
    let sSum = 0, sN = 0, bSum = 0, bN = 0;
    for (const i of chosen) {
      if (mags[i] >= t) { bSum += mags[i]; bN++; } else { sSum += mags[i]; sN++; }
    }
    const big = bN ? bSum / bN : 0;
    const small = sN ? sSum / sN : big;
    levels[2 * c] = small;
    levels[2 * c + 1] = big;
    for (const i of chosen) {
      const code = (x[lo + i] < 0 ? 2 : 0) | (mags[i] >= t ? 1 : 0);
      idx[at] = i;
      codes[at >> 2] |= code << ((at & 3) * 2);
      at++;
    }
  }
  return { codec: 'sparse', n, idx, codes, levels, chunk, k };
}

function encodeSparse32(x: Float32Array, chunk: number): PackedVector {
  const n = x.length;
  const nc = Math.ceil(n / chunk);
  const counts = new Uint32Array(nc);
  let total = 0;
  for (let i = 0; i < n; i++) if (x[i] !== 0) total++;
  const idx = new Uint16Array(total);
  const vals = new Float32Array(total);
  let at = 0;
  for (let c = 0; c < nc; c++) {
    const lo = c * chunk;
    const hi = Math.min(n, lo + chunk);
    for (let i = lo; i < hi; i++) {
      if (x[i] === 0) continue;
      idx[at] = i - lo;
      vals[at++] = x[i];
      counts[c]++;
    }
  }
  return { codec: 'sparse32', n, counts, idx, vals, chunk };
}

/**
 * A sparsesum vector: float32(scale * sum_j coef[j] * decode(parts[j])). The parts must be sparse
 * vectors of the same n (they are the packed deltas as received).
 */
export function sparseSum(parts: PackedVector[], coef: ArrayLike<number>, scale: number): PackedVector {
  if (parts.length === 0 || parts.length !== coef.length || parts.length > MAX_SUM_PARTS) throw new CodecError(`codec: sparsesum of ${parts.length} parts with ${coef.length} coefficients`);
  const n = parts[0].n;
  for (const q of parts) if (q.codec !== 'sparse' || q.n !== n) throw new CodecError(`codec: sparsesum parts must be sparse vectors of ${n} values, got ${q.codec} of ${q.n}`);
  return { codec: 'sparsesum', n, parts, coef: Float64Array.from(coef), scale };
}

/** The dense vector a packed one stands for. `out` (length n) is overwritten if given. */
export function decode(p: PackedVector, out = new Float32Array(p.n)): Float32Array {
  if (out.length !== p.n) throw new CodecError(`codec: decode into ${out.length} values, the vector has ${p.n}`);
  switch (p.codec) {
    case 'none':
      out.set(p.f32!);
      return out;
    case 'fp16':
      return decodeHalf(p.f16!, out);
    case 'int8': {
      const { q, scales, block } = p as Required<PackedVector>;
      for (let b = 0; b < scales.length; b++) {
        const s = scales[b] / 127;
        const hi = Math.min(p.n, (b + 1) * block);
        for (let i = b * block; i < hi; i++) out[i] = q[i] * s;
      }
      return out;
    }
    case 'sparse': {
      const { idx, codes, levels, chunk, k } = p as Required<PackedVector>;
      out.fill(0);
      const nc = Math.ceil(p.n / chunk);
      let at = 0;
      for (let c = 0; c < nc; c++) {
        const lo = c * chunk;
        const kk = keptIn(Math.min(chunk, p.n - lo), k);
        for (let j = 0; j < kk; j++, at++) {
          const code = (codes[at >> 2] >> ((at & 3) * 2)) & 3;
          const mag = levels[2 * c + (code & 1)];
          out[lo + idx[at]] = code & 2 ? -mag : mag;
        }
      }
      return out;
    }
    case 'sparse32': {
      const { counts, idx, vals, chunk } = p as Required<PackedVector>;
      out.fill(0);
      let at = 0;
      for (let c = 0; c < counts.length; c++) for (let j = 0; j < counts[c]; j++, at++) out[c * chunk + idx[at]] = vals[at];
      return out;
    }
    case 'sparsesum': {
      // As weightedMean (shared/diloco/outer.ts) then the outer step: float64 acc += w * x, part
      // by part, then float32(scale * acc). Keep the two in step (tests/shared/diloco/codec.test.ts).
      const { parts, coef, scale } = p as Required<PackedVector>;
      const acc = new Float64Array(p.n);
      const d = new Float32Array(p.n);
      for (let j = 0; j < parts.length; j++) {
        decode(parts[j], d);
        const w = coef[j];
        for (let i = 0; i < p.n; i++) acc[i] += w * d[i];
      }
      for (let i = 0; i < p.n; i++) out[i] = scale * acc[i];
      return out;
    }
  }
}

/**
 * Checks a packed vector from the wire: codec known, n as expected, every array of the right type
 * and length, indices inside their chunk, scales and levels finite and >= 0. Throws CodecError
 * naming the field; the caller turns it into a rejection and changes nothing.
 */
export function validatePacked(x: unknown, n: number, where: string, allowed: readonly CodecName[] = CODECS, limits: { maxChunk?: number } = {}): PackedVector {
  const bad = (m: string): never => {
    throw new CodecError(`${where}: ${m}`);
  };
  if (typeof x !== 'object' || x === null || Array.isArray(x) || ArrayBuffer.isView(x)) bad('expected an object');
  const o = x as Record<string, unknown>;
  const codec = o.codec as CodecName;
  if (!allowed.includes(codec)) bad(`codec ${JSON.stringify(o.codec)?.slice(0, 20)} is not one of ${allowed.join(', ')}`);
  if (o.n !== n) bad(`n is ${String(o.n).slice(0, 20)}, expected ${n}`);
  const arr = <T>(k: string, ctor: { new (...a: any[]): T; name: string }, len: number): T => {
    const v = o[k];
    if (!(v instanceof ctor)) bad(`${k}: expected a ${ctor.name}`);
    if ((v as unknown as { length: number }).length !== len) bad(`${k}: length ${(v as unknown as { length: number }).length}, expected ${len}`);
    return v as T;
  };
  const finiteNonNeg = (a: Float32Array, k: string) => {
    for (let i = 0; i < a.length; i++) if (!(a[i] >= 0 && a[i] < Infinity)) bad(`${k}[${i}] is ${a[i]}, expected a finite value >= 0`);
  };
  const posInt = (k: string, max: number): number => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) bad(`${k}: expected an integer in [1, ${max}]`);
    return v as number;
  };
  switch (codec) {
    case 'none': {
      const f = arr('f32', Float32Array, n);
      for (let i = 0; i < n; i++) if (f[i] - f[i] !== 0) bad(`f32[${i}] is ${f[i]}`);
      return { codec, n, f32: f };
    }
    case 'fp16': {
      const h = arr('f16', Uint16Array, n);
      for (let i = 0; i < n; i++) if ((h[i] & 0x7c00) === 0x7c00) bad(`f16[${i}] is Inf or NaN`);
      return { codec, n, f16: h };
    }
    case 'int8': {
      const block = posInt('block', 1 << 20);
      const q = arr('q', Int8Array, n);
      const scales = arr('scales', Float32Array, Math.ceil(n / block));
      finiteNonNeg(scales, 'scales');
      for (let i = 0; i < n; i++) if (q[i] === -128) bad(`q[${i}] is -128, outside [-127, 127]`);
      return { codec, n, q, scales, block };
    }
    case 'sparse': {
      const chunk = posInt('chunk', Math.min(65536, limits.maxChunk ?? 65536));
      const k = posInt('k', chunk);
      const total = sparseCount(n, chunk, k);
      const idx = arr('idx', Uint16Array, total);
      const codes = arr('codes', Uint8Array, Math.ceil(total / 4));
      const levels = arr('levels', Float32Array, 2 * Math.ceil(n / chunk));
      finiteNonNeg(levels, 'levels');
      const nc = Math.ceil(n / chunk);
      let at = 0;
      for (let c = 0; c < nc; c++) {
        const len = Math.min(chunk, n - c * chunk);
        const kk = keptIn(len, k);
        for (let j = 0; j < kk; j++, at++) if (idx[at] >= len) bad(`idx[${at}] = ${idx[at]} outside chunk ${c} of ${len} values`);
      }
      return { codec, n, idx, codes, levels, chunk, k };
    }
    case 'sparse32': {
      const chunk = posInt('chunk', Math.min(65536, limits.maxChunk ?? 65536));
      const nc = Math.ceil(n / chunk);
      const counts = arr('counts', Uint32Array, nc);
      let total = 0;
      for (let c = 0; c < nc; c++) {
        const len = Math.min(chunk, n - c * chunk);
        if (counts[c] > len) bad(`counts[${c}] = ${counts[c]}, chunk ${c} has ${len} values`);
        total += counts[c];
      }
      const idx = arr('idx', Uint16Array, total);
      const vals = arr('vals', Float32Array, total);
      let at = 0;
      for (let c = 0; c < nc; c++) {
        const len = Math.min(chunk, n - c * chunk);
        for (let j = 0; j < counts[c]; j++, at++) {
          if (idx[at] >= len) bad(`idx[${at}] = ${idx[at]} outside chunk ${c} of ${len} values`);
          if (j > 0 && idx[at] <= idx[at - 1]) bad(`idx[${at}] = ${idx[at]}: indices must ascend within chunk ${c}`);
          if (vals[at] - vals[at] !== 0) bad(`vals[${at}] is ${vals[at]}`);
        }
      }
      return { codec, n, counts, idx, vals, chunk };
    }
    case 'sparsesum': {
      const parts = o.parts;
      if (!Array.isArray(parts) || parts.length < 1 || parts.length > MAX_SUM_PARTS) bad(`parts: expected an array of 1..${MAX_SUM_PARTS} sparse vectors`);
      const checked = (parts as unknown[]).map((q, j) => validatePacked(q, n, `${where}.parts[${j}]`, ['sparse'], limits));
      const coef = arr('coef', Float64Array, checked.length);
      for (let j = 0; j < coef.length; j++) if (coef[j] - coef[j] !== 0) bad(`coef[${j}] is ${coef[j]}`);
      if (typeof o.scale !== 'number' || !Number.isFinite(o.scale)) bad('scale: expected a finite number');
      return { codec, n, parts: checked, coef, scale: o.scale as number };
    }
  }
}

/**
 * Error feedback kept by the sender (worker, or the coordinator for what it publishes): what a
 * lossy codec did not send is added to the next vector. Over rounds, the decoded vectors plus the
 * residual sum to the dense vectors given (up to float32 rounding).
 */
export class ErrorFeedback {
  readonly residual: Float32Array;

  constructor(n: number) {
    this.residual = new Float32Array(n);
  }

  /** Packs delta + residual; the residual becomes what the packed vector misses. */
  compress(delta: Float32Array, codec: CodecName, params: CodecParams = DEFAULT_CODEC_PARAMS): PackedVector {
    const r = this.residual;
    if (delta.length !== r.length) throw new CodecError(`error feedback: vector of ${delta.length} values, residual of ${r.length}`);
    const x = new Float32Array(r.length);
    for (let i = 0; i < x.length; i++) x[i] = delta[i] + r[i];
    const p = encode(x, codec, params);
    const d = decode(p);
    for (let i = 0; i < x.length; i++) r[i] = x[i] - d[i];
    return p;
  }

  /**
   * Packs `delta` alone, without the residual (a round the coordinator re-computes: its reference
   * starts from an empty residual), and adds what the packed vector misses to the residual, which
   * is kept: the sum identity of compress() holds across such rounds, nothing is dropped.
   */
  compressApart(delta: Float32Array, codec: CodecName, params: CodecParams = DEFAULT_CODEC_PARAMS): PackedVector {
    const r = this.residual;
    if (delta.length !== r.length) throw new CodecError(`error feedback: vector of ${delta.length} values, residual of ${r.length}`);
    const p = encode(delta, codec, params);
    const d = decode(p);
    for (let i = 0; i < r.length; i++) r[i] += delta[i] - d[i];
    return p;
  }

  reset(): void {
    this.residual.fill(0);
  }
}
