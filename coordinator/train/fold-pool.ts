// FoldPool (--fold-threads N): the streaming token-weighted mean of MeanAggregator, computed on N
// worker threads (fold-thread.ts) instead of the event loop. A result's gradient is handed over
// without a copy: the received frame's ArrayBuffer is TRANSFERRED to one thread (copied first
// only when it is not the frame's own, e.g. a pooled slice). The thread scans it (finite check +
// norm, optionally the replay digest) and holds it; the coordinator judges the result with those
// figures and then tells the thread to fold it (into the thread's own float64 accumulator) or to
// drop it: a refused result changes nothing. At step end the threads sum the accumulators over
// parameter ranges into the float32 mean. The order of the float64 additions differs from the
// single accumulator's (per-thread partial sums), so the mean equals MeanAggregator's up to
// float64 rounding.
//
// A thread that fails (throws, exits) fails every open request and every later one with
// ERR_FOLD_THREAD: the step's mean is lost with it and the caller must not count it.

import type { Worker } from 'node:worker_threads';
import { AppError } from '../../shared/errors.ts';
import { startTsWorker } from '../threads/ts-worker.ts';

export type FoldRequest =
  | { op: 'check'; id: number; buf: ArrayBuffer; offset: number; length: number; digest: boolean }
  | { op: 'fold'; id: number; tokens: number }
  | { op: 'drop'; id: number }
  | { op: 'flush'; id: number }
  | { op: 'zero'; id: number }
  | { op: 'finish'; id: number; lo: number; hi: number; out: SharedArrayBuffer; accs: SharedArrayBuffer[]; inv: number }
  | { op: 'fail'; id: number };

export type FoldReply =
  | { op: 'checked'; id: number; ok: true; norm: number; digest?: string }
  | { op: 'checked'; id: number; ok: false; index: number; value: string }
  | { op: 'folded' | 'dropped' | 'flushed' | 'zeroed' | 'finished'; id: number }
  | { op: 'buffer'; id: 0; buf: ArrayBuffer };

export type CheckOutcome = { ok: true; norm: number; digest?: string } | { ok: false; index: number; value: string };

interface Thread { worker: Worker; acc: SharedArrayBuffer; open: Map<number, { resolve: (r: FoldReply) => void; reject: (e: Error) => void }> }

/** A gradient the pool holds (checked, not yet folded or dropped). */
export interface Held { readonly id: number; readonly thread: number }

export interface FoldPoolOptions {
  /** Transfer each gradient's buffer back to the caller after fold/drop (benchmarks reuse frames). */
  returnBuffers?: boolean;
  /** Called with each buffer coming back (returnBuffers). */
  onBuffer?: (buf: ArrayBuffer) => void;
}

/** True when `g`'s ArrayBuffer is (about) this array alone, so transferring it moves nothing else. */
export function ownsBuffer(g: Float32Array): boolean {
  return !(g.buffer instanceof SharedArrayBuffer) && g.buffer.byteLength <= g.byteLength + 65536;
}

export class FoldPool {
  private readonly threads: Thread[];
  private nextId = 1;
  private rr = 0;
  private failure: AppError | null = null;
  private n = 0;
  private tok = 0;
  /** Gradients copied because their buffer was shared with other data (pooled slices). */
  copies = 0;

  constructor(readonly paramCount: number, readonly size: number, private readonly opts: FoldPoolOptions = {}) {
    if (!Number.isInteger(size) || size < 1) throw new AppError('ERR_CONFIG', `fold pool: thread count must be an integer >= 1, got ${size}`);
    this.threads = Array.from({ length: size }, (_, i) => {
      const acc = new SharedArrayBuffer(paramCount * 8);
      const worker = startTsWorker(new URL('./fold-thread.ts', import.meta.url), { acc, returnBuffers: opts.returnBuffers === true });
      const t: Thread = { worker, acc, open: new Map() };
      worker.on('message', (r: FoldReply) => {
        if (r.op === 'buffer') {
          this.opts.onBuffer?.(r.buf);
          return;
        }
        const o = t.open.get(r.id);
        if (!o) return;
        t.open.delete(r.id);
        o.resolve(r);
      });
      const die = (why: string) => this.fail(new AppError('ERR_FOLD_THREAD', `fold thread ${i} failed: ${why}; this step's mean is lost`));
      worker.on('error', (e) => die(e.message));
      worker.on('exit', (code) => {
        if (!this.closed) die(`it exited (code ${code})`);
      });
      return t;
    });
  }

  private closed = false;

  private fail(e: AppError): void {
    if (this.failure) return;
    this.failure = e;
    for (const t of this.threads) {
      for (const o of t.open.values()) o.reject(e);
      t.open.clear();
    }
    void this.close();
  }

  private send(ti: number, m: FoldRequest, transfer: ArrayBuffer[] = []): Promise<FoldReply> {
    if (this.failure) return Promise.reject(this.failure);
    const t = this.threads[ti];
    return new Promise((resolve, reject) => {
      t.open.set(m.id, { resolve, reject });
      t.worker.postMessage(m, transfer);
    });
  }

  /** Results folded this step, and their tokens. */
  get count(): number {
    return this.n;
  }
  get tokens(): number {
    return this.tok;
  }

  /**
   * Hand `g` to a thread (after this, `g` is detached: read nothing from it) and get its finite
   * check, norm and (digest) SHA-256. A non-finite gradient is dropped by the thread at once.
   */
  async check(g: Float32Array, digest = false): Promise<{ held: Held | null; outcome: CheckOutcome }> {
    if (g.length !== this.paramCount) throw new AppError('ERR_FOLD_LENGTH', `fold pool: gradient length ${g.length} != ${this.paramCount} (validated earlier: bug)`);
    let src = g;
    if (!ownsBuffer(g)) {
      src = new Float32Array(g);
      this.copies++;
    }
    const id = this.nextId++;
    const ti = this.rr;
    this.rr = (this.rr + 1) % this.threads.length;
    const r = await this.send(ti, { op: 'check', id, buf: src.buffer as ArrayBuffer, offset: src.byteOffset, length: src.length, digest }, [src.buffer as ArrayBuffer]);
    if (r.op !== 'checked') throw new AppError('ERR_FOLD_THREAD', `fold pool: unexpected reply ${r.op}`);
    if (!r.ok) return { held: null, outcome: { ok: false, index: r.index, value: r.value } };
    return { held: { id, thread: ti }, outcome: { ok: true, norm: r.norm, ...(r.digest !== undefined ? { digest: r.digest } : {}) } };
  }

  /** Count a checked, accepted result into the mean (token-weighted). Resolves once the thread took it (folded by the next flush/finish). */
  fold(h: Held, tokens: number): Promise<void> {
    if (tokens > 0) {
      this.n++;
      this.tok += tokens;
    }
    return this.send(h.thread, { op: 'fold', id: h.id, tokens }).then(() => undefined);
  }

  /** Let go of a checked result that was refused: nothing of it is counted. */
  drop(h: Held): Promise<void> {
    return this.send(h.thread, { op: 'drop', id: h.id }).then(() => undefined);
  }

  private all(op: 'flush' | 'zero'): Promise<unknown> {
    return Promise.all(this.threads.map((_, i) => this.send(i, { op, id: this.nextId++ })));
  }

  /** Start a step: every accumulator to zero (call with nothing held). */
  async begin(): Promise<void> {
    await this.all('flush');
    await this.all('zero');
    this.n = 0;
    this.tok = 0;
  }

  /** The token-weighted mean of the folded results into `out`; returns the total tokens. */
  async finish(out: Float32Array): Promise<number> {
    await this.all('flush');
    const P = this.paramCount;
    const shared = new SharedArrayBuffer(P * 4);
    const inv = this.tok > 0 ? 1 / this.tok : 0;
    const accs = this.threads.map((t) => t.acc);
    const per = Math.ceil(P / this.threads.length);
    await Promise.all(this.threads.map((_, i) => this.send(i, { op: 'finish', id: this.nextId++, lo: Math.min(P, i * per), hi: Math.min(P, (i + 1) * per), out: shared, accs, inv })));
    out.set(new Float32Array(shared));
    return this.tok;
  }

  /** Make thread `i` throw (tests of the failure path). */
  injectFailure(i: number): void {
    this.threads[i].worker.postMessage({ op: 'fail', id: this.nextId++ });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}
