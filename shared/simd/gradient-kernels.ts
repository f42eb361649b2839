// The gradient kernels (gradient-kernels.wat.ts) behind a small API: a memory that holds an
// optional float64 accumulator plus a scratch area, into which gradients are copied in
// CHUNK-float pieces (cache-resident, so the copy costs a read, not a write-back), and optionally
// staging slots, into which scanInto copies a whole gradient as it scans it (fold threads). Used by
// validateResult's finite scan (sumOfSquares), the streaming mean (MeanAggregator), the
// coordinator's fold threads and AdamW (shared/optim/adamw.ts adamwStep). Where WebAssembly SIMD
// is missing (an old browser) or the accumulator does not fit a wasm32 memory (> ~500M parameters), create() returns null and the
// callers keep their JavaScript loops, which give the same results.

import { GRADIENT_KERNELS_WASM } from './gradient-kernels.wasm.ts';
import { MAX_PAGES, type KernelMemory } from './gradient-kernels.wat.ts';
import { CHUNK, FOLD_STRIDE, KERNEL_FOLD_MAX, kernelPages, phaseOf, SCRATCH_SKEW, scratchOffset, slotBytes, slotsOffset } from './kernel-layout.ts';

export { CHUNK, KERNEL_FOLD_MAX, kernelPages, slotBytes, slotsThatFit } from './kernel-layout.ts';

/** Floats per piece that scanInto copies at once into a staging slot (256 KiB: in L2 here). */
const STAGE_PIECE = 8 * CHUNK;

/** Node's Buffer where this runtime has one (copyIn); the browser has none and uses TypedArray.set. */
const NodeBuffer = (globalThis as { Buffer?: { from(b: ArrayBufferLike, byteOffset: number, length: number): Uint8Array & { fill(v: Uint8Array): unknown } } }).Buffer;

interface KernelExports {
  sumsq(p: number, n: number): number;
  sumsq32(p: number, n: number): number;
  scan32(p: number, n: number, st: number): number;
  scale(acc: number, out: number, n: number, inv: number): void;
  fold1(acc: number, g0: number, n: number, t0: number): void;
  fold2(acc: number, g0: number, g1: number, n: number, t0: number, t1: number): void;
  fold3(acc: number, g0: number, g1: number, g2: number, n: number, t0: number, t1: number, t2: number): void;
  fold4(acc: number, g0: number, g1: number, g2: number, g3: number, n: number, t0: number, t1: number, t2: number, t3: number): void;
  adamw(p: number, g: number, m: number, v: number, mask: number, n: number, b1: number, c1: number, b2: number, c2: number, ss: number, ib: number, eps: number, df: number): void;
}

/** AdamW's per-update constants, as shared/optim/adamw.ts computes them (GradientKernels.adamw). */
export interface AdamWConstants {
  b1: number;
  b2: number;
  eps: number;
  /** lr / (1 - b1^t) */
  stepSize: number;
  /** 1 / sqrt(1 - b2^t) */
  invSqrtBc2: number;
  /** 1 - lr * wd */
  decayFactor: number;
}

const compiled = new Map<KernelMemory, WebAssembly.Module | null>();

function decodeBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The compiled module, or null where this runtime has no WebAssembly SIMD (checked once). */
function moduleFor(kind: KernelMemory): WebAssembly.Module | null {
  if (!compiled.has(kind)) {
    let m: WebAssembly.Module | null = null;
    try {
      if (typeof WebAssembly === 'object' && (kind === 'local' || typeof SharedArrayBuffer === 'function')) m = new WebAssembly.Module(decodeBase64(GRADIENT_KERNELS_WASM[kind]) as BufferSource);
    } catch {
      m = null; // no SIMD (or no shared memory): the JavaScript loops stand in
    }
    compiled.set(kind, m);
  }
  return compiled.get(kind)!;
}

/** scan32's multiplier (odd), also for the tail done here. */
const HASH_M = 0x9e3779b1 | 0;

/** murmur3's 32-bit finaliser: every output bit depends on every input bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A scan's two results: the sum of squares (as sumOfSquares) and the keyed digest of the bytes. */
export interface GradientScan {
  sumSquares: number;
  digest: string;
}

/** create()'s options beyond the memory. */
export interface KernelOptions {
  /**
   * Digest with these kernels' key (scan, scanInto): digests are compared with each other, so
   * every instance that scans results in one thread must share one key (the thread's scratch
   * kernels, scratchKernelsHere, and the fold threads' staging instances on this thread).
   */
  keysOf?: GradientKernels;
}

export class GradientKernels {
  /** The float64 accumulator (bytes [0, 8 * accFloats) of the memory). */
  readonly acc: Float64Array;
  private readonly f32: Float32Array;
  /** Byte offset of the scratch (KERNEL_FOLD_MAX chunks of CHUNK floats) and its float index. */
  private readonly scratch: number;
  private readonly scratchF: number;
  /** Byte offset of adamw's chunk of mask bytes (after the float chunks). */
  private readonly maskAt: number;
  /** Byte offset of scan32's states (32 bytes) and keys (32 bytes); the keys, as 8 words. */
  private readonly hashAt: number;
  private readonly keys: Uint32Array;

  private constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: KernelExports,
    readonly accFloats: number,
    opts: KernelOptions,
  ) {
    this.acc = new Float64Array(memory.buffer, 0, accFloats);
    this.f32 = new Float32Array(memory.buffer);
    this.scratch = scratchOffset(accFloats);
    this.scratchF = this.scratch / 4;
    this.maskAt = this.scratch + KERNEL_FOLD_MAX * FOLD_STRIDE;
    this.hashAt = this.maskAt + CHUNK;
    // A secret per instance (per thread): digests are compared within this process only, and an
    // attacker who cannot see them cannot aim a gradient at another one's digest.
    this.keys = opts.keysOf ? opts.keysOf.keys : crypto.getRandomValues(new Uint32Array(8));
  }

  /**
   * Kernels over a fresh memory holding an accumulator of `accFloats` (0: scratch only). `shared`:
   * the memory is a SharedArrayBuffer (fold threads), or pass `memory` made by another thread for
   * the same `accFloats`. Null where the kernels cannot run here (see the header).
   */
  static create(accFloats: number, kind: KernelMemory = 'local', memory?: WebAssembly.Memory, opts: KernelOptions = {}): GradientKernels | null {
    const mod = moduleFor(kind);
    const pages = kernelPages(accFloats);
    if (!mod || pages > MAX_PAGES) return null;
    let mem = memory;
    if (!mem) {
      try {
        mem = new WebAssembly.Memory({ initial: pages, maximum: pages, ...(kind === 'shared' ? { shared: true } : {}) });
      } catch {
        return null; // address space refused: the JavaScript loops stand in
      }
    }
    const inst = new WebAssembly.Instance(mod, { env: { mem } });
    return new GradientKernels(mem, inst.exports as unknown as KernelExports, accFloats, opts);
  }

  /**
   * Sum of squares of `a` (NaN or +-Inf iff some value is; see validate.ts sumOfSquares): blocks of
   * 32 squares summed in float32, the blocks in float64 (sumsq32), relative error < 3e-7. A chunk
   * whose float32 sums overflow (a value above ~6e18, finite) is summed again in float64 (sumsq),
   * so only a NaN or Inf in `a` makes the result non-finite.
   */
  sumOfSquares(a: Float32Array): number {
    return this.chunkSums(a, 32, (at, len) => this.k.sumsq32(at, len));
  }

  /**
   * The sum of squares of `a`, chunk by chunk: each chunk copied into the scratch, or, with `dst`
   * (a byte offset in this memory, scanInto), to dst + its offset, where it stays (the staged
   * copy); `block` floats per kernel step (the tail in JavaScript, and copied too), `part` the
   * kernel's sum of the chunk at `at`; a non-finite part (a float32 overflow of a finite value) is
   * summed again in float64 (sumsq).
   */
  private chunkSums(a: Float32Array, block: number, part: (at: number, len: number) => number, dst?: number): number {
    const n = a.length;
    const body = n - (n % block);
    let s = 0;
    const sum = (at: number, len: number) => {
      const p = part(at, len);
      s += Number.isFinite(p) ? p : this.k.sumsq(at, len);
    };
    if (dst === undefined) {
      for (let o = 0; o < body; o += CHUNK) {
        const len = Math.min(CHUNK, body - o);
        this.f32.set(a.subarray(o, o + len), this.scratchF);
        sum(this.scratch, len);
      }
    } else {
      // A piece at a time (cache-sized, fewer copy calls), summed CHUNK by CHUNK as above (the
      // same partial sums, so the same bits), while the piece is in cache.
      for (let o = 0; o < body; o += STAGE_PIECE) {
        const end = Math.min(o + STAGE_PIECE, body);
        this.copyIn(a.subarray(o, end), dst + o * 4);
        for (let c = o; c < end; c += CHUNK) sum(dst + c * 4, Math.min(CHUNK, end - c));
      }
      if (body < n) this.copyIn(a.subarray(body), dst + body * 4);
    }
    for (let i = body; i < n; i++) s += a[i] * a[i];
    return s;
  }

  /**
   * Copy `src` to byte `at` of this memory. Into a shared memory TypedArray.set is V8's relaxed
   * copy, word by word (68 ms per 500 MB here against 42 for memcpy, 2026-12-03); Node's
   * Buffer.fill with a source as long as the range is one memcpy, shared or not.
   */
  private copyIn(src: Float32Array, at: number): void {
    if (NodeBuffer && src.byteLength > 0) NodeBuffer.from(this.f32.buffer, at, src.byteLength).fill(NodeBuffer.from(src.buffer, src.byteOffset, src.byteLength));
    else this.f32.set(src, at / 4);
  }

  /**
   * One pass over `a`: sumOfSquares's sum and a keyed 256-bit digest of its bytes (scan32; equal
   * bytes give equal digests within this instance, different ones differ but with negligible
   * chance). The digest replaces a SHA-256 of the gradient (coordinator/security/replay.ts), a
   * second pass at ~1 GB/s: 4x the cost of the rest of a result's ingest (bench:ingest).
   */
  scan(a: Float32Array): GradientScan {
    return this.scanAt(a);
  }

  /**
   * scan(a) (digest) or sumOfSquares(a) (no digest), same results, in the pass that copies `a` to
   * byte offset `dst` of this memory (a staging slot: stagingOffset), so that the fold reads the
   * copy in place instead of copying `a` in again (fold-threads.ts). The copy is written chunk by
   * chunk and each chunk summed while it is in cache: about a memcpy plus the kernel's arithmetic.
   */
  scanInto(a: Float32Array, dst: number, digest: boolean): { sumSquares: number; digest?: string } {
    if (dst < this.slotsAt() || dst % 4 !== 0 || dst + a.length * 4 > this.memory.buffer.byteLength) {
      throw new RangeError(`gradient kernels: scanInto at byte ${dst} for ${a.length} floats is outside the staging slots`);
    }
    return digest ? this.scanAt(a, dst) : { sumSquares: this.chunkSums(a, 32, (at, len) => this.k.sumsq32(at, len), dst) };
  }

  /** Byte offset of staging slot `i` (fold threads: a memory made with kernelPages(accFloats, slots)). */
  slotAt(i: number): number {
    return this.slotsAt() + i * slotBytes(this.accFloats);
  }

  private slotsAt(): number {
    return slotsOffset(this.accFloats);
  }

  /**
   * Where in slot `i` a copy of `a` goes: 2,112 bytes after `a`'s offset within a 4 KiB page, for
   * the reason of SCRATCH_SKEW (V8's large backing stores start on a page, so byteOffset tells the
   * page offset of a received frame's gradient), which keeps its phase modulo 64 (phaseOf).
   */
  stagingOffset(i: number, a: Float32Array): number {
    return this.slotAt(i) + ((a.byteOffset + SCRATCH_SKEW) % 4096);
  }

  /** A float32 view of `length` values at byte offset `at` of this memory (a staged copy). */
  view(at: number, length: number): Float32Array {
    return new Float32Array(this.f32.buffer, at, length);
  }

  private scanAt(a: Float32Array, dst?: number): GradientScan {
    const n = a.length;
    const body = n - (n % 32);
    const st = this.hashAt;
    const w = new Uint32Array(this.memory.buffer, st, 16);
    for (let i = 0; i < 8; i++) w[i] = this.keys[(i + 3) % 8]; // start states
    w.set(this.keys, 8);
    const s = this.chunkSums(a, 32, (at, len) => this.k.scan32(at, len, st), dst);
    const h = Array.from(w.subarray(0, 8), (x) => x | 0);
    if (body < n) {
      const bits = new Uint32Array(a.buffer, a.byteOffset + body * 4, n - body);
      for (let i = 0; i < bits.length; i++) {
        const l = i % 8;
        h[l] = Math.imul((((h[l] << 13) | (h[l] >>> 19)) + (bits[i] ^ this.keys[l])) | 0, HASH_M);
      }
    }
    const out = new Uint32Array(8);
    for (let i = 0; i < 8; i++) out[i] = fmix32((h[i] ^ Math.imul(n, 0x27d4eb2f) ^ h[(i + 1) % 8] >>> 7) >>> 0);
    return { sumSquares: s, digest: Array.from(out, (x) => x.toString(16).padStart(8, '0')).join('') };
  }

  /** Sum of squares of `a` in float64 throughout (sumsq: exact to float64 rounding; tests, benches). */
  sumOfSquaresExact(a: Float32Array): number {
    return this.chunkSums(a, 8, (at, len) => this.k.sumsq(at, len));
  }

  /**
   * acc[i] += t0*g0[i] + t1*g1[i] + ... for up to KERNEL_FOLD_MAX results per pass, with the same
   * float64 operations in the same order as aggregate.ts foldPending (bit-identical).
   */
  fold(p: ReadonlyArray<{ g: Float32Array; t: number }>): void {
    for (let i = 0; i < p.length; i += KERNEL_FOLD_MAX) this.foldUpTo4(p.slice(i, i + KERNEL_FOLD_MAX));
  }

  private foldUpTo4(p: ReadonlyArray<{ g: Float32Array; t: number }>): void {
    const n = this.accFloats;
    const body = n - (n % 4);
    if (p.every((r) => r.g.buffer === this.f32.buffer)) {
      // Staged copies (scanInto) already in this memory: one kernel call reads them in place.
      this.foldAt(0, p.map((r) => r.g.byteOffset), body, p);
    } else {
      // Each result's chunk at its own phase (phaseOf): word copies into a shared memory.
      const at = p.map((r, j) => this.scratch + j * FOLD_STRIDE + phaseOf(r.g));
      for (let o = 0; o < body; o += CHUNK) {
        const len = Math.min(CHUNK, body - o);
        for (let j = 0; j < p.length; j++) this.f32.set(p[j].g.subarray(o, o + len), at[j] / 4);
        this.foldAt(o * 8, at, len, p);
      }
    }
    const a = this.acc;
    for (let i = body; i < n; i++) {
      let s = p[0].t * p[0].g[i];
      for (let j = 1; j < p.length; j++) s += p[j].t * p[j].g[i];
      a[i] += s;
    }
  }

  /** The fold kernel for p.length results: `len` floats at byte offsets `at` into acc from byte `acc`. */
  private foldAt(acc: number, at: number[], len: number, p: ReadonlyArray<{ t: number }>): void {
    const [g0, g1, g2, g3] = at;
    if (p.length === 4) this.k.fold4(acc, g0, g1, g2, g3, len, p[0].t, p[1].t, p[2].t, p[3].t);
    else if (p.length === 3) this.k.fold3(acc, g0, g1, g2, len, p[0].t, p[1].t, p[2].t);
    else if (p.length === 2) this.k.fold2(acc, g0, g1, len, p[0].t, p[1].t);
    else this.k.fold1(acc, g0, len, p[0].t);
  }

  /**
   * One AdamW update in place on `params`, `m`, `v` over [0, n - n % 4) (returns that count; the
   * caller does the tail): the bits of shared/optim/adamw.ts's loop (adamw in the WAT text), CHUNK
   * values at a time through the scratch. `decay`: non-zero bytes decay, null decays nothing.
   */
  adamw(params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, decay: Uint8Array | null, c: AdamWConstants): number {
    const n = params.length;
    const body = n - (n % 4);
    const S = this.scratch;
    const F = this.scratchF;
    const C4 = CHUNK * 4;
    const mask = new Uint8Array(this.memory.buffer, this.maskAt, CHUNK);
    if (!decay) mask.fill(0);
    const c1 = 1 - c.b1;
    const c2 = 1 - c.b2;
    for (let o = 0; o < body; o += CHUNK) {
      const len = Math.min(CHUNK, body - o);
      this.f32.set(params.subarray(o, o + len), F);
      this.f32.set(grads.subarray(o, o + len), F + CHUNK);
      this.f32.set(m.subarray(o, o + len), F + 2 * CHUNK);
      this.f32.set(v.subarray(o, o + len), F + 3 * CHUNK);
      if (decay) mask.set(decay.subarray(o, o + len));
      this.k.adamw(S, S + C4, S + 2 * C4, S + 3 * C4, this.maskAt, len, c.b1, c1, c.b2, c2, c.stepSize, c.invSqrtBc2, c.eps, c.decayFactor);
      params.set(this.f32.subarray(F, F + len), o);
      m.set(this.f32.subarray(F + 2 * CHUNK, F + 2 * CHUNK + len), o);
      v.set(this.f32.subarray(F + 3 * CHUNK, F + 3 * CHUNK + len), o);
    }
    return body;
  }

  /** out[i] = f32(acc[i] * inv) for every i (bit-identical to the JavaScript assignment). */
  scaleInto(out: Float32Array, inv: number): void {
    const n = this.accFloats;
    const body = n - (n % 4);
    for (let o = 0; o < body; o += CHUNK) {
      const len = Math.min(CHUNK, body - o);
      this.k.scale(o * 8, this.scratch, len, inv);
      out.set(this.f32.subarray(this.scratchF, this.scratchF + len), o);
    }
    for (let i = body; i < n; i++) out[i] = this.acc[i] * inv;
  }
}

/** Below this many values a JavaScript loop is as fast as the kernels with their chunk copies. */
export const KERNEL_MIN_VALUES = 4096;

let scratchKernels: GradientKernels | null | undefined;

/** The scratch-only kernels of this thread (validateResult's scan, AdamW), or null (no SIMD here). */
export function scratchKernelsHere(): GradientKernels | null {
  if (scratchKernels === undefined) scratchKernels = GradientKernels.create(0, 'local');
  return scratchKernels;
}
