// A small pool of verification threads (--verify-threads, default 1): the CPU re-computation of a
// worker's result takes seconds on the `small` preset (a 64x64 task ~6 s), and on the coordinator's
// own loop it stalled heartbeats (honest workers declared dead), the dashboard and the API. Jobs
// queue FIFO; a thread is started on first need (tests and runs that never verify pay nothing) and
// again after a crash. Threads are unref'd: a coordinator never closed still lets the process end.
// Two kinds of job: a replica's result (run) and a pipeline share, every stage re-run (runShare).

import type { Worker } from 'node:worker_threads';
import type { MicroBatch } from '../../shared/backend.ts';
import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { TaskDpo } from '../../shared/protocol/messages.ts';
import { startTsWorker } from '../threads/ts-worker.ts';
import type { ShareCheck, StageMismatch } from './stage-recompute.ts';
import type { VerifyFigures } from './verify-compare.ts';

/** One parameter version, copied once into shared memory; `key` names the copy. */
export interface SharedParams {
  key: number;
  buffer: SharedArrayBuffer;
}

export interface VerifyRequest {
  id: number;
  paramsKey: number;
  params: SharedArrayBuffer;
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  mask: Uint8Array;
  loss: number;
  grads: Float32Array;
  /** --objective dpo: the rows are pairs; re-compute the DPO loss and gradient. */
  dpo?: TaskDpo;
}

/**
 * One SharedArrayBuffer copy of a parameter vector per (version, array), reused by every job of
 * that version (the threads read it; pending jobs keep older copies alive). The copy is taken now,
 * synchronously: the caller may change its array afterwards.
 */
export class SharedParamsCache {
  private last: { version: number; source: Float32Array; params: SharedParams } | null = null;
  /** Copies made so far. */
  copies = 0;

  get(params: Float32Array, version: number): SharedParams {
    const s = this.last;
    if (s && s.version === version && s.source === params) return s.params;
    const buffer = new SharedArrayBuffer(params.byteLength);
    new Float32Array(buffer).set(params);
    this.last = { version, source: params, params: { key: ++this.copies, buffer } };
    return this.last.params;
  }
}

/** A pipeline share to re-run at the version's parameters (stage-recompute.ts). */
export interface ShareVerifyRequest {
  kind: 'share';
  id: number;
  paramsKey: number;
  params: SharedArrayBuffer;
  check: ShareCheck;
  tolerance: number;
}

export type ShareVerdict = { mismatch: StageMismatch | null; ms: number };

/**
 * The loss of a micro-batch at the version's parameters moved by `sign` x `delta` (sign 0: the
 * parameters themselves): a DiLoCo delta's loss score (delta-judge.ts), off the event loop.
 */
export interface LossRequest {
  kind: 'loss';
  id: number;
  paramsKey: number;
  params: SharedArrayBuffer;
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  mask: Uint8Array;
  delta: SharedArrayBuffer | null;
  sign: -1 | 0 | 1;
}

export type LossAnswer = { loss: number; ms: number };
type Answer = (VerifyFigures & { ms: number }) | ShareVerdict | LossAnswer;
export type VerifyReply = ({ id: number } & Answer) | { id: number; error: string };

export interface VerifyJob {
  params: SharedParams;
  batch: MicroBatch & { dpo?: TaskDpo };
  loss: number;
  grads: Float32Array;
}

interface Pending {
  msg: VerifyRequest | ShareVerifyRequest | LossRequest;
  resolve(f: Answer): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  job: Pending | null;
}

export class VerifyPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private seq = 0;
  private closed = false;

  constructor(
    private readonly model: ModelConfig,
    readonly size: number,
  ) {}

  /** Jobs queued or running. */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.job).length;
  }

  /** Threads started (at most `size`). */
  get threads(): number {
    return this.slots.length;
  }

  run(job: VerifyJob): Promise<VerifyFigures & { ms: number }> {
    if (this.closed) return Promise.reject(closedError());
    // Copies, transferred: the gradient stays with the hub (folded in if accepted), and the
    // batch's arrays may be views of the dataset. One memcpy each, no second copy on posting.
    const { batch } = job;
    const msg: VerifyRequest = {
      id: ++this.seq,
      paramsKey: job.params.key,
      params: job.params.buffer,
      B: batch.B,
      T: batch.T,
      inputs: batch.inputs.slice(),
      targets: batch.targets.slice(),
      mask: batch.mask.slice(),
      loss: job.loss,
      grads: job.grads.slice(),
      ...(batch.dpo ? { dpo: { beta: batch.dpo.beta, refLogProbs: batch.dpo.refLogProbs.slice() } } : {}),
    };
    return new Promise((resolve, reject) => {
      this.queue.push({ msg, resolve: (f) => resolve(f as VerifyFigures & { ms: number }), reject });
      this.dispatch();
    });
  }

  /** Re-run a pipeline share (every stage) at `params`; its arrays are copied when posted. */
  runShare(params: SharedParams, check: ShareCheck, tolerance: number): Promise<ShareVerdict> {
    if (this.closed) return Promise.reject(closedError());
    const msg: ShareVerifyRequest = { kind: 'share', id: ++this.seq, paramsKey: params.key, params: params.buffer, check, tolerance };
    return new Promise((resolve, reject) => {
      this.queue.push({ msg, resolve: (f) => resolve(f as ShareVerdict), reject });
      this.dispatch();
    });
  }

  /**
   * The loss of `batch` at `params` moved by sign x `delta` (a SharedArrayBuffer of float32, the
   * same length; null with sign 0). The batch's arrays are copied and transferred.
   */
  runLoss(params: SharedParams, batch: MicroBatch, delta: SharedArrayBuffer | null, sign: -1 | 0 | 1): Promise<LossAnswer> {
    if (this.closed) return Promise.reject(closedError());
    const msg: LossRequest = {
      kind: 'loss', id: ++this.seq, paramsKey: params.key, params: params.buffer, B: batch.B, T: batch.T,
      inputs: batch.inputs.slice(), targets: batch.targets.slice(), mask: batch.mask.slice(), delta, sign,
    };
    return new Promise((resolve, reject) => {
      this.queue.push({ msg, resolve: (f) => resolve(f as LossAnswer), reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    while (this.queue.length > 0 && !this.closed) {
      let slot = this.slots.find((s) => !s.job);
      if (!slot) {
        if (this.slots.length >= this.size) return;
        slot = this.spawn();
      }
      const p = this.queue.shift()!;
      slot.job = p;
      const m = p.msg;
      if ('kind' in m && m.kind === 'loss') slot.worker.postMessage(m, [m.inputs.buffer, m.targets.buffer, m.mask.buffer] as ArrayBuffer[]);
      else if ('kind' in m) slot.worker.postMessage(m); // structured clone: the share's arrays stay the relay's
      else slot.worker.postMessage(m, [m.inputs.buffer, m.targets.buffer, m.mask.buffer, m.grads.buffer] as ArrayBuffer[]);
    }
  }

  private spawn(): Slot {
    const worker = startTsWorker(new URL('./verify-worker.ts', import.meta.url), { model: this.model });
    worker.unref();
    const slot: Slot = { worker, job: null };
    this.slots.push(slot);
    worker.on('message', (r: VerifyReply) => {
      const p = slot.job;
      if (!p || p.msg.id !== r.id) return;
      slot.job = null;
      if ('error' in r) p.reject(new AppError('ERR_VERIFY', `verification thread: ${r.error}`, 500));
      else if ('mismatch' in r) p.resolve({ mismatch: r.mismatch, ms: r.ms });
      else if ('loss' in r) p.resolve({ loss: r.loss, ms: r.ms });
      else p.resolve({ relErr: r.relErr, lossErr: r.lossErr, biasErr: r.biasErr, ms: r.ms });
      this.dispatch();
    });
    // A crash ('error' then 'exit') fails only the job it was running; the next job starts a new thread.
    const fail = (why: string) => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return;
      this.slots.splice(i, 1);
      const p = slot.job;
      slot.job = null;
      p?.reject(this.closed ? closedError() : new AppError('ERR_VERIFY_THREAD', `verification thread stopped: ${why}`, 500));
      this.dispatch();
    };
    worker.on('error', (e) => fail(e.message));
    worker.on('exit', (code) => fail(`exit code ${code}`));
    return slot;
  }

  /** Stop the threads; queued and running jobs fail with ERR_VERIFY_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(closedError());
    const slots = this.slots.splice(0);
    for (const s of slots) {
      s.job?.reject(closedError());
      s.job = null;
    }
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

function closedError(): AppError {
  return new AppError('ERR_VERIFY_CLOSED', 'verification pool closed (coordinator shutting down)', 503);
}
