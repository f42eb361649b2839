// ThreadedMeanAggregator (--fold-threads N): the streaming token-weighted mean of MeanAggregator
// with its folds on N worker threads (fold-thread.ts) instead of the event loop, so the event
// loop's per-result work is the decode and the finite scan while the threads fold the previous
// results. An accepted result's gradient is handed over without a copy: its frame's ArrayBuffer
// is TRANSFERRED to one thread, round robin (copied first only when the buffer holds other data,
// e.g. a pooled slice). Each thread folds into its own float64 accumulator; at step end the
// threads sum the accumulators over parameter ranges into the float32 mean. The float64 sums are
// added in another order than the single accumulator's, so the mean equals MeanAggregator's to
// float64 rounding (then float32).
//
// The Aggregator API is synchronous (the trainer's accept/finish): begin() and finish() wait for
// the threads with Atomics.wait on a shared Int32Array, and add() waits when a thread has more
// than `maxQueued` gradients not yet folded (back-pressure: a thread's queue holds at most that
// many frames, whatever the sockets deliver). A thread that fails (throws, is killed) sets its
// FAILED slot; from then on `failed` is true, add() drops gradients and finish() throws
// ERR_FOLD_THREAD: the trainer redoes the step with a MeanAggregator in the event loop
// (trainer.ts recoverFromFoldFailure).

import type { Worker } from 'node:worker_threads';
import { AppError } from '../../shared/errors.ts';
import { GradientKernels, kernelPages } from '../../shared/simd/gradient-kernels.ts';
import { MAX_PAGES } from '../../shared/simd/gradient-kernels.wat.ts';
import { startTsWorker } from '../threads/ts-worker.ts';
import { FOLD_BATCH, type Aggregator } from './aggregate.ts';

/** Slots per thread in the shared control array. */
export const CTL = { SEQ: 0, FOLDED: 1, FAILED: 2, READY: 3, SLOTS: 4 } as const;

export type FoldThreadRequest =
  | { op: 'add'; buf: ArrayBuffer; offset: number; length: number; tokens: number }
  | { op: 'flush' | 'zero'; seq: number }
  | { op: 'finish'; seq: number; lo: number; hi: number; out: SharedArrayBuffer; accs: SharedArrayBuffer[]; inv: number }
  | { op: 'fail' };

export interface FoldThreadData {
  index: number;
  paramCount: number;
  ctl: SharedArrayBuffer;
  /** The accumulator's shared wasm memory (SIMD kernels), or null (JavaScript loop over accBuffer). */
  memory: WebAssembly.Memory | null;
  accBuffer: SharedArrayBuffer;
}

/** True when `g`'s ArrayBuffer is (about) this array alone, so transferring it moves nothing else. */
export function ownsBuffer(g: Float32Array): boolean {
  return !(g.buffer instanceof SharedArrayBuffer) && g.buffer.byteLength <= g.byteLength + 65536;
}

/** How long one wait for the threads may take before the pool is declared failed. */
const WAIT_LIMIT_MS = 120_000;

export class ThreadedMeanAggregator implements Aggregator {
  readonly name = 'mean';
  private readonly workers: Worker[];
  private readonly accs: SharedArrayBuffer[];
  private readonly ctl: Int32Array;
  private readonly sent: number[];
  private readonly out: SharedArrayBuffer;
  private seq = 0;
  private rr = 0;
  private n = 0;
  private tok = 0;
  private closed = false;
  private failure: string | null = null;
  /** Gradients copied because their buffer held other data (pooled slices). */
  copies = 0;
  /** Gradients a thread may hold unfolded before add() waits. */
  readonly maxQueued: number;

  constructor(readonly paramCount: number, readonly size: number) {
    if (!Number.isInteger(size) || size < 1 || size > 64) throw new AppError('ERR_CONFIG', `fold threads: thread count must be an integer in [1, 64], got ${size}`);
    this.ctl = new Int32Array(new SharedArrayBuffer(4 * CTL.SLOTS * size));
    this.sent = new Array<number>(size).fill(0);
    this.out = new SharedArrayBuffer(paramCount * 4);
    // At least one pass's worth plus one in flight; more for small gradients (256 MiB per thread).
    this.maxQueued = Math.max(FOLD_BATCH + 1, Math.floor((256 << 20) / (paramCount * 4)));
    const memories = Array.from({ length: size }, () => sharedKernelMemory(paramCount));
    this.accs = memories.map((m) => (m ? (m.buffer as unknown as SharedArrayBuffer) : new SharedArrayBuffer(paramCount * 8)));
    this.workers = memories.map((memory, index) => {
      const data: FoldThreadData = { index, paramCount, ctl: this.ctl.buffer as SharedArrayBuffer, memory, accBuffer: this.accs[index] };
      const w = startTsWorker(new URL('./fold-thread.ts', import.meta.url), data as unknown as Record<string, unknown>);
      w.unref(); // a run that ends without close() still exits
      w.on('message', (m: { error?: string }) => {
        if (m.error) this.failure ??= `fold thread ${index}: ${m.error}`;
      });
      w.on('error', (e) => (this.failure ??= `fold thread ${index}: ${e.message}`));
      w.on('exit', (code) => {
        if (!this.closed) {
          this.failure ??= `fold thread ${index} exited (code ${code})`;
          Atomics.store(this.ctl, index * CTL.SLOTS + CTL.FAILED, 1);
        }
      });
      return w;
    });
  }

  /** A thread failed: this step's mean is incomplete (see the header). */
  get failed(): boolean {
    if (this.failure) return true;
    for (let i = 0; i < this.size; i++) if (Atomics.load(this.ctl, i * CTL.SLOTS + CTL.FAILED) === 1) return true;
    return false;
  }

  get failureMessage(): string {
    return this.failure ?? 'a fold thread failed';
  }

  get count(): number {
    return this.n;
  }
  get tokens(): number {
    return this.tok;
  }

  begin(_step: number): void {
    this.all('zero');
    this.n = 0;
    this.tok = 0;
  }

  /** Hands `grads` to a thread: afterwards the array is detached (nothing may read it). */
  add(grads: Float32Array, tokens: number, _workerId: string): void {
    if (grads.length !== this.paramCount) throw new Error(`aggregate: gradient length ${grads.length} != ${this.paramCount} (validated earlier: bug)`);
    if (tokens <= 0 || this.failed) return; // a failed pool's step is redone (trainer.ts)
    let g = grads;
    if (!ownsBuffer(g)) {
      g = new Float32Array(g);
      this.copies++;
    }
    const t = this.rr;
    this.rr = (this.rr + 1) % this.size;
    const m: FoldThreadRequest = { op: 'add', buf: g.buffer as ArrayBuffer, offset: g.byteOffset, length: g.length, tokens };
    this.workers[t].postMessage(m, [g.buffer as ArrayBuffer]);
    this.sent[t]++;
    this.n++;
    this.tok += tokens;
    const slot = t * CTL.SLOTS + CTL.FOLDED;
    if (this.sent[t] - Atomics.load(this.ctl, slot) > this.maxQueued) {
      this.waitUntil(t, CTL.FOLDED, this.sent[t] - this.maxQueued, false);
    }
  }

  /** Wait until every gradient handed over so far is folded (benchmarks time ingest with it). */
  flush(): void {
    this.all('flush');
  }

  finish(out: Float32Array): number {
    this.all('flush');
    const P = this.paramCount;
    const inv = this.tok > 0 ? 1 / this.tok : 0;
    const per = Math.ceil(P / this.size);
    const seq = ++this.seq;
    this.workers.forEach((w, i) => w.postMessage({ op: 'finish', seq, lo: Math.min(P, i * per), hi: Math.min(P, (i + 1) * per), out: this.out, accs: this.accs, inv } satisfies FoldThreadRequest));
    for (let i = 0; i < this.size; i++) this.waitUntil(i, CTL.SEQ, seq, true);
    out.set(new Float32Array(this.out));
    return this.tok;
  }

  /** Make thread `i` throw (tests of the failure path). */
  injectFailure(i: number): void {
    this.workers[i].postMessage({ op: 'fail' } satisfies FoldThreadRequest);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private all(op: 'flush' | 'zero'): void {
    const seq = ++this.seq;
    for (const w of this.workers) w.postMessage({ op, seq } satisfies FoldThreadRequest);
    for (let i = 0; i < this.size; i++) this.waitUntil(i, CTL.SEQ, seq, true);
  }

  /**
   * Block until thread `t`'s slot reaches `target`. A failed thread: throws ERR_FOLD_THREAD when
   * `strict` (begin/finish), returns when not (add: the failure shows at finish).
   */
  private waitUntil(t: number, slot: number, target: number, strict: boolean): void {
    const i = t * CTL.SLOTS + slot;
    const deadline = Date.now() + WAIT_LIMIT_MS;
    for (;;) {
      const v = Atomics.load(this.ctl, i);
      if (v >= target) return;
      if (Atomics.load(this.ctl, t * CTL.SLOTS + CTL.FAILED) === 1 || this.failure) {
        this.failure ??= `fold thread ${t} failed`;
        if (strict) throw new AppError('ERR_FOLD_THREAD', `fold threads: ${this.failure}; this step's mean is incomplete (the trainer redoes the step in the event loop)`);
        return;
      }
      if (Date.now() > deadline) {
        this.failure ??= `fold thread ${t} did not answer within ${WAIT_LIMIT_MS / 1000} s`;
        Atomics.store(this.ctl, t * CTL.SLOTS + CTL.FAILED, 1);
        if (strict) throw new AppError('ERR_FOLD_THREAD', `fold threads: ${this.failure}; this step's mean is incomplete`);
        return;
      }
      Atomics.wait(this.ctl, i, v, 250);
    }
  }
}

/** A shared wasm memory for one thread's accumulator (SIMD kernels), or null (JavaScript folds). */
function sharedKernelMemory(paramCount: number): WebAssembly.Memory | null {
  // GradientKernels.create decides whether the kernels run here; the memory alone is made here so
  // that the thread, not this one, instantiates them.
  const probe = GradientKernels.create(0, 'shared');
  if (!probe) return null;
  const pages = kernelPages(paramCount);
  if (pages > MAX_PAGES) return null;
  try {
    return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    return null;
  }
}
