// ThreadedMeanAggregator (--fold-threads N): the streaming token-weighted mean of MeanAggregator
// with its folds on N worker threads (fold-thread.ts) instead of the event loop, so the event
// loop's per-result work is the decode and the finite scan while the threads fold the previous
// results. An accepted result's gradient reaches a thread one of two ways:
// - STAGED (pools of up to STAGE_MAX_THREADS threads): validateResult's finite scan, which reads
//   the whole gradient anyway, writes a copy of it into a staging slot of a thread's memory as it
//   goes (ResultLimits.stage -> stage()); add() then sends the slot's offset and the thread folds
//   the copy in place. One read of the received frame instead of two, and nothing for the thread
//   to copy in or free. Slots are reused once folded; a staged result that is not added (refused)
//   leaves its slot to the next one.
// - TRANSFERRED (larger pools, no free slot, a copy overwritten meanwhile): the frame's
//   ArrayBuffer moves to one thread, round robin (copied first only when the buffer holds other
//   data, e.g. a pooled slice), which copies it into its scratch chunk by chunk as it folds.
// Each thread folds into its own float64 accumulator; at step end the threads sum the
// accumulators over parameter ranges into the float32 mean. The float64 sums are added in another
// order than the single accumulator's (and, where fewer than 2 x FOLD_BATCH slots fit, e.g.
// GPT-2 small, in passes of fewer results), so the mean equals MeanAggregator's to float64
// rounding (then float32).
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
import { GradientKernels, kernelPages, scratchKernelsHere, slotsThatFit } from '../../shared/simd/gradient-kernels.ts';
import type { StagingTarget } from '../../shared/protocol/validate.ts';
import { MAX_PAGES } from '../../shared/simd/gradient-kernels.wat.ts';
import { startTsWorker } from '../threads/ts-worker.ts';
import { FOLD_BATCH, type Aggregator } from './aggregate.ts';

/** Slots per thread in the shared control array. */
export const CTL = { SEQ: 0, FOLDED: 1, FAILED: 2, READY: 3, SLOTS: 4 } as const;

export type FoldThreadRequest =
  | { op: 'add'; buf: ArrayBuffer; offset: number; length: number; tokens: number }
  /** A gradient staged in this thread's memory at byte `offset` (ThreadedMeanAggregator.stage). */
  | { op: 'addStaged'; offset: number; tokens: number }
  | { op: 'flush' | 'zero'; seq: number }
  | { op: 'finish'; seq: number; lo: number; hi: number; out: SharedArrayBuffer; accs: SharedArrayBuffer[]; inv: number }
  | { op: 'fail' };

export interface FoldThreadData {
  index: number;
  paramCount: number;
  /** Results folded per pass over the accumulator (FOLD_BATCH, fewer where few slots fit). */
  batch: number;
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

/**
 * A staging slot of one thread's memory, as this (the main) thread sees it: free; `staged` (a
 * result's gradient was copied in by its scan, the result not added yet: reusable, the oldest
 * first, its result is then handed over the old way); `sent` (added: the thread folds it in
 * place, reusable once the thread's FOLDED count reaches `ticket`).
 */
interface Slot {
  state: 'free' | 'staged' | 'sent';
  /** Bumped at each staging: a result remembers the generation its copy was made in. */
  gen: number;
  /** Byte offset of the staged copy in the thread's memory. */
  at: number;
  /** Staging order (which staged slot is the oldest). */
  stagedAt: number;
  /** The thread's add count when this slot was sent (it is folded once FOLDED >= ticket). */
  ticket: number;
}

/**
 * Pools of up to this many fold threads stage (see stage()); larger ones transfer. Staging moves
 * work from the threads to the event loop: per GPT-2-small result here (2026-12-03) the event loop
 * spends ~80 ms (scan + copy into the slot) instead of ~60 (scan into its own scratch), and a
 * thread ~42 ms (in-place fold) instead of ~85 (copy-in and fold) plus freeing the transferred
 * 500 MB frame (40-130 ms on this VM). With one or two threads the threads are the bottleneck and
 * staging wins; with three or more they keep up anyway, and the event loop's 60 ms beats 80.
 */
export const STAGE_MAX_THREADS = 2;

/**
 * Staging slots per fold thread for a gradient of `paramCount` floats: two passes' worth (the
 * thread folds one pass while the scans fill the next), as many as fit beside the accumulator in
 * one wasm32 memory (GPT-2 small: 6), none below 2 or without the SIMD kernels.
 */
export function stagingSlots(paramCount: number): number {
  const s = Math.min(2 * FOLD_BATCH, slotsThatFit(paramCount));
  return s >= 2 ? s : 0;
}

/** Results per fold pass with `slots` staging slots: FOLD_BATCH, or half the slots where fewer fit. */
export function foldBatchFor(slots: number): number {
  return slots >= 2 ? Math.min(FOLD_BATCH, Math.floor(slots / 2)) : FOLD_BATCH;
}

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
  /** Gradients handed over as staged copies (folded in place, no transfer). */
  stagedAdds = 0;
  /** Gradients a thread may hold unfolded before add() waits. */
  readonly maxQueued: number;
  /** Staging slots per thread (0: none, every gradient is transferred) and results per fold pass. */
  readonly slotsPerThread: number;
  readonly batch: number;
  /** This thread's kernels over each fold thread's memory (they write the staged copies), or null. */
  private readonly stagers: Array<GradientKernels | null>;
  private readonly slots: Slot[][];
  /** The slot and generation each staged gradient's copy was made in. */
  private readonly stagedOf = new WeakMap<Float32Array, { t: number; s: number; gen: number }>();
  private stageRr = 0;
  private stageSeq = 0;

  constructor(readonly paramCount: number, readonly size: number) {
    if (!Number.isInteger(size) || size < 1 || size > 64) throw new AppError('ERR_CONFIG', `fold threads: thread count must be an integer in [1, 64], got ${size}`);
    this.ctl = new Int32Array(new SharedArrayBuffer(4 * CTL.SLOTS * size));
    this.sent = new Array<number>(size).fill(0);
    this.out = new SharedArrayBuffer(paramCount * 4);
    // At least one pass's worth plus one in flight; more for small gradients (256 MiB per thread).
    this.maxQueued = Math.max(FOLD_BATCH + 1, Math.floor((256 << 20) / (paramCount * 4)));
    const scanKeys = scratchKernelsHere();
    const slots = scanKeys && size <= STAGE_MAX_THREADS ? stagingSlots(paramCount) : 0;
    const memories = Array.from({ length: size }, () => sharedKernelMemory(paramCount, slots));
    this.slotsPerThread = memories.every((m) => m) ? slots : 0;
    this.batch = foldBatchFor(this.slotsPerThread);
    // Keyed like validateResult's own scans, so that a digest is one function of the bytes.
    this.stagers = memories.map((m) => (m && this.slotsPerThread ? GradientKernels.create(paramCount, 'shared', m, { keysOf: scanKeys! }) : null));
    this.slots = memories.map(() => Array.from({ length: this.slotsPerThread }, () => ({ state: 'free' as const, gen: 0, at: 0, stagedAt: 0, ticket: 0 })));
    this.accs = memories.map((m) => (m ? (m.buffer as unknown as SharedArrayBuffer) : new SharedArrayBuffer(paramCount * 8)));
    this.workers = memories.map((memory, index) => {
      const data: FoldThreadData = { index, paramCount, batch: this.batch, ctl: this.ctl.buffer as SharedArrayBuffer, memory, accBuffer: this.accs[index] };
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

  /**
   * A staging slot for `grads` (validateResult's `stage`: its scan writes the copy there), round
   * robin over the threads, or null (no slots, a closed or failed pool, the wrong length). Takes a free
   * slot, else one whose fold is done, else the oldest staged one whose result was not added (its
   * result, if added later, is handed over the old way), else waits for the thread to fold the
   * oldest sent one (back-pressure: the scans never run more than the slots ahead of the folds).
   */
  stage(grads: Float32Array): StagingTarget | null {
    if (this.slotsPerThread === 0 || grads.length !== this.paramCount || this.closed || this.failed) return null;
    const t = this.stageRr;
    this.stageRr = (t + 1) % this.size;
    const s = this.reusableSlot(t);
    if (s < 0) return null;
    const kernels = this.stagers[t]!;
    const slot = this.slots[t][s];
    slot.state = 'staged';
    slot.gen++;
    slot.at = kernels.stagingOffset(s, grads);
    slot.stagedAt = ++this.stageSeq;
    this.stagedOf.set(grads, { t, s, gen: slot.gen });
    return { kernels, byteOffset: slot.at };
  }

  private reusableSlot(t: number): number {
    const ring = this.slots[t];
    const folded = Atomics.load(this.ctl, t * CTL.SLOTS + CTL.FOLDED);
    let staged = -1;
    let sent = -1;
    for (let s = 0; s < ring.length; s++) {
      const x = ring[s];
      if (x.state === 'sent' && x.ticket <= folded) x.state = 'free';
      if (x.state === 'free') return s;
      if (x.state === 'staged' && (staged < 0 || x.stagedAt < ring[staged].stagedAt)) staged = s;
      if (x.state === 'sent' && (sent < 0 || x.ticket < ring[sent].ticket)) sent = s;
    }
    if (staged >= 0) return staged;
    // Every slot is sent and unfolded. The thread folds a pass whenever `batch` are queued, and
    // slots >= batch, so the oldest is folded without any further add: waiting cannot deadlock.
    this.waitUntil(t, CTL.FOLDED, ring[sent].ticket, false);
    if (this.failed) return -1;
    ring[sent].state = 'free';
    return sent;
  }

  /**
   * Hands `grads` to a thread: its staged copy (stage) when it has a current one, which the thread
   * folds in place; else the array itself, transferred (afterwards it is detached: nothing may
   * read it).
   */
  add(grads: Float32Array, tokens: number, _workerId: string): void {
    if (grads.length !== this.paramCount) throw new Error(`aggregate: gradient length ${grads.length} != ${this.paramCount} (validated earlier: bug)`);
    const staged = this.stagedSlot(grads);
    if (tokens <= 0 || this.failed) return; // a failed pool's step is redone (trainer.ts)
    let t: number;
    if (staged) {
      const { slot } = staged;
      t = staged.t;
      this.workers[t].postMessage({ op: 'addStaged', offset: slot.at, tokens } satisfies FoldThreadRequest);
      slot.state = 'sent';
      slot.ticket = ++this.sent[t];
      this.stagedAdds++;
    } else {
      let g = grads;
      if (!ownsBuffer(g)) {
        g = new Float32Array(g);
        this.copies++;
      }
      t = this.rr;
      this.rr = (this.rr + 1) % this.size;
      const m: FoldThreadRequest = { op: 'add', buf: g.buffer as ArrayBuffer, offset: g.byteOffset, length: g.length, tokens };
      this.workers[t].postMessage(m, [g.buffer as ArrayBuffer]);
      this.sent[t]++;
    }
    this.n++;
    this.tok += tokens;
    if (this.sent[t] - Atomics.load(this.ctl, t * CTL.SLOTS + CTL.FOLDED) > this.maxQueued) {
      this.waitUntil(t, CTL.FOLDED, this.sent[t] - this.maxQueued, false);
    }
  }

  /** The slot and thread of `grads`' staged copy if it is still there (the record is used up). */
  private stagedSlot(grads: Float32Array): { t: number; slot: Slot } | null {
    const rec = this.stagedOf.get(grads);
    if (!rec) return null;
    this.stagedOf.delete(grads);
    const slot = this.slots[rec.t][rec.s];
    return slot.gen === rec.gen && slot.state === 'staged' ? { t: rec.t, slot } : null;
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

/**
 * A shared wasm memory for one thread's accumulator and `slots` staging slots (SIMD kernels), or
 * null (JavaScript folds).
 */
function sharedKernelMemory(paramCount: number, slots: number): WebAssembly.Memory | null {
  // GradientKernels.create decides whether the kernels run here; the memory alone is made here so
  // that the thread, not this one, instantiates them.
  const probe = GradientKernels.create(0, 'shared');
  if (!probe) return null;
  const pages = kernelPages(paramCount, slots);
  if (pages > MAX_PAGES) return null;
  try {
    return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    return null;
  }
}
