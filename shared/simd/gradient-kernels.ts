// The gradient kernels (gradient-kernels.wat.ts) behind a small API: a memory that holds an
// optional float64 accumulator plus a scratch area, into which gradients are copied in
// CHUNK-float pieces (cache-resident, so the copy costs a read, not a write-back). Used by
// validateResult's finite scan (sumOfSquares), the streaming mean (MeanAggregator) and the
// coordinator's fold threads. Where WebAssembly SIMD is missing (an old browser) or the
// accumulator does not fit a wasm32 memory (> ~500M parameters), create() returns null and the
// callers keep their JavaScript loops, which give the same results.

import { GRADIENT_KERNELS_WASM } from './gradient-kernels.wasm.ts';
import { MAX_PAGES, type KernelMemory } from './gradient-kernels.wat.ts';

/** Floats per chunk copied into the kernels' memory: 32 KiB, stays in L1/L2 (8192 measured best). */
export const CHUNK = 8192;
/** Results one fold kernel call takes (fold1..fold4). */
export const KERNEL_FOLD_MAX = 4;
const PAGE = 65536;

interface KernelExports {
  sumsq(p: number, n: number): number;
  sumsq32(p: number, n: number): number;
  scale(acc: number, out: number, n: number, inv: number): void;
  fold1(acc: number, g0: number, n: number, t0: number): void;
  fold2(acc: number, g0: number, g1: number, n: number, t0: number, t1: number): void;
  fold3(acc: number, g0: number, g1: number, g2: number, n: number, t0: number, t1: number, t2: number): void;
  fold4(acc: number, g0: number, g1: number, g2: number, g3: number, n: number, t0: number, t1: number, t2: number, t3: number): void;
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

/** Pages a memory needs for an accumulator of `accFloats` float64 plus the scratch. */
export function kernelPages(accFloats: number): number {
  return Math.ceil((accFloats * 8 + KERNEL_FOLD_MAX * CHUNK * 4) / PAGE);
}

export class GradientKernels {
  /** The float64 accumulator (bytes [0, 8 * accFloats) of the memory). */
  readonly acc: Float64Array;
  private readonly f32: Float32Array;
  /** Byte offset of the scratch (KERNEL_FOLD_MAX chunks of CHUNK floats) and its float index. */
  private readonly scratch: number;
  private readonly scratchF: number;

  private constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: KernelExports,
    readonly accFloats: number,
  ) {
    this.acc = new Float64Array(memory.buffer, 0, accFloats);
    this.f32 = new Float32Array(memory.buffer);
    this.scratch = accFloats * 8;
    this.scratchF = this.scratch / 4;
  }

  /**
   * Kernels over a fresh memory holding an accumulator of `accFloats` (0: scratch only). `shared`:
   * the memory is a SharedArrayBuffer (fold threads), or pass `memory` made by another thread for
   * the same `accFloats`. Null where the kernels cannot run here (see the header).
   */
  static create(accFloats: number, kind: KernelMemory = 'local', memory?: WebAssembly.Memory): GradientKernels | null {
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
    return new GradientKernels(mem, inst.exports as unknown as KernelExports, accFloats);
  }

  /**
   * Sum of squares of `a` (NaN or +-Inf iff some value is; see validate.ts sumOfSquares): blocks of
   * 32 squares summed in float32, the blocks in float64 (sumsq32), relative error < 3e-7. A chunk
   * whose float32 sums overflow (a value above ~6e18, finite) is summed again in float64 (sumsq),
   * so only a NaN or Inf in `a` makes the result non-finite.
   */
  sumOfSquares(a: Float32Array): number {
    const n = a.length;
    const body = n - (n % 32);
    let s = 0;
    for (let o = 0; o < body; o += CHUNK) {
      const len = Math.min(CHUNK, body - o);
      this.f32.set(a.subarray(o, o + len), this.scratchF);
      const part = this.k.sumsq32(this.scratch, len);
      s += Number.isFinite(part) ? part : this.k.sumsq(this.scratch, len);
    }
    for (let i = body; i < n; i++) s += a[i] * a[i];
    return s;
  }

  /** Sum of squares of `a` in float64 throughout (sumsq: exact to float64 rounding; tests, benches). */
  sumOfSquaresExact(a: Float32Array): number {
    const n = a.length;
    const body = n - (n % 8);
    let s = 0;
    for (let o = 0; o < body; o += CHUNK) {
      const len = Math.min(CHUNK, body - o);
      this.f32.set(a.subarray(o, o + len), this.scratchF);
      s += this.k.sumsq(this.scratch, len);
    }
    for (let i = body; i < n; i++) s += a[i] * a[i];
    return s;
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
    const k = p.length;
    const S = this.scratch;
    const C4 = CHUNK * 4;
    for (let o = 0; o < body; o += CHUNK) {
      const len = Math.min(CHUNK, body - o);
      for (let j = 0; j < k; j++) this.f32.set(p[j].g.subarray(o, o + len), this.scratchF + j * CHUNK);
      const acc = o * 8;
      if (k === 4) this.k.fold4(acc, S, S + C4, S + 2 * C4, S + 3 * C4, len, p[0].t, p[1].t, p[2].t, p[3].t);
      else if (k === 3) this.k.fold3(acc, S, S + C4, S + 2 * C4, len, p[0].t, p[1].t, p[2].t);
      else if (k === 2) this.k.fold2(acc, S, S + C4, len, p[0].t, p[1].t);
      else this.k.fold1(acc, S, len, p[0].t);
    }
    const a = this.acc;
    for (let i = body; i < n; i++) {
      let s = p[0].t * p[0].g[i];
      for (let j = 1; j < k; j++) s += p[j].t * p[j].g[i];
      a[i] += s;
    }
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

let scanKernels: GradientKernels | null | undefined;

/** The scratch-only kernels of this thread (validateResult's scan), or null (no SIMD here). */
export function scanKernelsHere(): GradientKernels | null {
  if (scanKernels === undefined) scanKernels = GradientKernels.create(0, 'local');
  return scanKernels;
}
