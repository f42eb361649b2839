// Work assignment for data-parallel replicas (the WorkAssigner of role 'replica'): each holds the
// whole model and computes the gradient of a slice of the step's global batch. Leases go to idle
// replicas in proportion to their measured throughput, sized within their plan and timed for
// their speed; parameters are sent first when stale. A result is validated, checked against its
// lease, judged by security, folded into the trainer, acknowledged; a refused one is counted.
// --min-workers gates the start of training here (it counts replicas).

import type { Logger } from 'pino';
import type { ParamsMsg, RejectCode, TaskMsg } from '../../shared/protocol/messages.ts';
import { encodeOnce } from '../../shared/protocol/parser.ts';
import { validateResult } from '../../shared/protocol/validate.ts';
import type { CoordinatorConfig } from '../config.ts';
import type { Security } from '../security/security.ts';
import type { Lease } from '../train/step-work.ts';
import type { Trainer } from '../train/trainer.ts';
import { onceSoon, type AssignerHost, type Reject, type WorkAssigner, type WorkerPort } from './assigner.ts';
import type { EventBus } from './events.ts';
import type { WorkerRegistry, WorkerView } from './workers.ts';
import { ShareCap } from './share-cap.ts';

/** Leases handed out per assignment pass before the event loop gets a turn (see assign()). */
export const LEASES_PER_PASS = 32;
/** How soon workers held back by an unread backlog are looked at again. */
const BACKLOG_RECHECK_MS = 100;

interface LeaseInfo {
  lease: Lease;
  tokens: number;
}

export class ReplicaAssigner implements WorkAssigner {
  readonly role = 'replica' as const;
  /** Live leases handed out by this assigner, with their masked-in token counts. */
  private readonly leases = new Map<string, LeaseInfo>();
  private quorumReached = false;
  /** The current version's `params` message: one object per version, packed once by the parser. */
  private paramsMsg: ParamsMsg | null = null;
  /** Refused answers whose live lease is watched until it expires (freeAfterExpiry). */
  private readonly expiryWatch = new Set<string>();
  /** Per-step influence bound per identity and origin (share-cap.ts). */
  readonly shareCap: ShareCap;

  constructor(
    private readonly trainer: Trainer,
    private readonly cfg: CoordinatorConfig,
    private readonly workers: WorkerRegistry,
    private readonly security: Security,
    private readonly port: WorkerPort,
    private readonly host: AssignerHost,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {
    this.shareCap = new ShareCap(cfg.maxShare, (w) => security.shareCapped(w.id));
  }

  // ------------------------------------------------------------------ handing out leases

  assign(live: WorkerView[], now: number): void {
    if (live.length === 0) return;
    // --min-workers gates only the start of training (so splits are real from step 0); once
    // running, the run goes on with whoever is left.
    if (!this.quorumReached && live.length < this.cfg.minWorkers) {
      for (const w of live) this.host.wait(w, 'no-task', `waiting for ${this.cfg.minWorkers} workers (${live.length} connected)`);
      return;
    }
    this.quorumReached = true;
    const work = this.trainer.startStep();
    if (!work) return;
    // Called after every result: with 1,000 workers most calls find nothing to hand out, and each
    // pass must stay O(live) (the share cap and the chunk sizes are computed once per pass, not
    // once per worker: that was O(live^2) per result, O(live^3) per step).
    const free = live.filter((w) => !w.lease && w.socket);
    if (free.length === 0) return;
    if (work.pendingPositions === 0) {
      for (const w of free) this.host.wait(w, 'no-task', `all of step ${work.step}'s samples are leased; waiting for the next step`);
      return;
    }
    // A worker that has not taken what was sent to it (parameters, a task) gets nothing more
    // until it has: memory per connection stays bounded by about one parameter frame. (Asked only
    // here, with samples to hand out: it is a walk through the socket's objects.)
    const maxBacklog = 2 * 4 * this.trainer.paramCount + (1 << 20);
    const ready = free.filter((w) => !((this.port.backlog?.(w) ?? 0) > maxBacklog));
    // Nothing announces that a socket's backlog drained (a worker on a slow link reading its
    // parameters): look again shortly, or a run whose workers are all behind would wait for the
    // next result or lease expiry to hand out work.
    if (ready.length < free.length) this.recheckBacklogSoon();
    // Workers without a lease in this step first: while a step's leases go out in passes, the
    // first ones answer and are idle again; served first, they would drain the pool before the
    // last ones got any.
    if (this.servedStep !== work.step) {
      this.servedStep = work.step;
      this.served.clear();
    }
    const idle = ready.filter((w) => !this.served.has(w.id));
    for (const w of ready) if (this.served.has(w.id)) idle.push(w);
    const cap = this.shareCap.snapshot(work, live);
    const chunks = this.chunksFor(live, work.step, work.size, now);
    const capped: WorkerView[] = [];
    let handed = 0;
    for (const w of idle) {
      const room = cap.room(w);
      if (room <= 0) {
        capped.push(w);
        continue;
      }
      if (handed === LEASES_PER_PASS) {
        // The start of a step hands a lease (and the parameters) to every worker: in one go that
        // is a burst of sends that stalls the event loop (heartbeats, /healthz) for as long as it
        // takes. The rest goes out after the loop has had a turn.
        this.continueSoon();
        return;
      }
      const n = this.leaseTo(w, work, Math.min(room, chunks(w)), now);
      cap.note(w, n);
      if (n > 0) {
        handed++;
        this.served.add(w.id);
      }
    }
    // Liveness over the cap: nothing in flight and samples left that only capped workers could take.
    if (capped.length && work.active.size === 0 && work.pendingPositions > 0) {
      this.shareCap.lifted++;
      this.log.warn({ step: work.step, workers: capped.map((w) => w.id) }, 'share cap lifted for this step: no other worker can take its remaining samples');
      for (const w of capped) this.leaseTo(w, work, chunks(w), now);
    } else {
      for (const w of capped) this.host.wait(w, 'no-task', `this worker (or its address) has its share of step ${work.step}; waiting for the next step`);
    }
  }

  /** Schedule again once the event loop has served what is waiting (a pass stopped early). */
  private readonly continueSoon = onceSoon(() => this.host.schedule());
  private backlogTimer: NodeJS.Timeout | null = null;
  /** Workers leased some of step `servedStep` (assign() serves the others first). */
  private readonly served = new Set<string>();
  private servedStep = -1;

  private recheckBacklogSoon(): void {
    if (this.backlogTimer) return;
    this.backlogTimer = setTimeout(() => {
      this.backlogTimer = null;
      this.host.schedule();
    }, BACKLOG_RECHECK_MS);
    this.backlogTimer.unref();
  }


  /** Lease up to `size` samples of `work` to `w`; returns the samples leased (0: none). */
  private leaseTo(w: WorkerView, work: NonNullable<ReturnType<Trainer['startStep']>>, size: number, now: number): number {
    const leaseMs = this.leaseMsFor(w, size);
    const lease = work.lease(w.id, size, now, leaseMs);
    if (!lease) {
      this.host.wait(w, 'no-task', `all of step ${work.step}'s samples are leased; waiting for the next step`);
      return 0;
    }
    let tokens: number;
    let task: TaskMsg;
    try {
      const b = this.trainer.batchOf(lease);
      tokens = b.tokens;
      task = {
        taskId: lease.id,
        step: lease.step,
        version: lease.version,
        B: b.batch.B,
        T: b.batch.T,
        inputs: b.batch.inputs,
        targets: b.batch.targets,
        mask: b.batch.mask,
        tokens,
        sampleIds: Uint32Array.from(lease.ids),
        leaseMs,
        ...(this.cfg.compress === 'fp16' ? { compress: 'fp16' as const } : {}),
        // --objective dpo: the rows are the lease's pairs; tokens = pairs (trainer.batchOf).
        ...(b.batch.dpo ? { dpo: b.batch.dpo } : {}),
      };
    } catch (e) {
      work.release(lease.id, 'released');
      this.log.error({ err: e }, 'could not build a task');
      return 0;
    }
    if (w.paramsVersion !== this.trainer.version) {
      this.port.send(w, 'params', this.paramsMessage());
      this.workers.markParamsSent(w, this.trainer.version);
    }
    this.leases.set(lease.id, { lease, tokens });
    this.workers.markComputing(w, lease.id, lease.ids.length, now);
    this.port.send(w, 'task', task);
    this.workers.publish(w);
    return lease.ids.length;
  }

  /**
   * Lease duration for `size` samples on `w`: --lease-ms, or 3x the time its measured throughput
   * needs when that is longer (capped at 10x --lease-ms), so a slow-but-alive worker on a big
   * model is not re-leased forever; dead workers are caught by heartbeats, not by this timeout.
   */
  private leaseMsFor(w: WorkerView, size: number): number {
    if (!(w.samplesPerSec > 0)) return this.cfg.leaseMs;
    const need = Math.ceil((3000 * size) / w.samplesPerSec);
    return Math.min(10 * this.cfg.leaseMs, Math.max(this.cfg.leaseMs, need));
  }

  /**
   * Samples to lease to each worker in this pass: its throughput share of the step, within its
   * plan. When the step has at least one sample per live worker, each gets one first and the rest
   * is shared by throughput; shares are apportioned by largest remainder, so they sum to the step's
   * size. So every worker contributes to every step it can: rounding each share up instead (1,024
   * samples over 1,000 workers: 2 each) left half of them idle, and with measured rates a little
   * uneven the faster half took everything. O(live log live) once per pass.
   */
  /**
   * chunks(), kept for the step while the live list is the same and for at most a second: while a
   * step's leases go out in passes, results arrive and each triggers a pass; recomputing the
   * shares (a sort over every worker) for each of them was O(N^2 log N) per step.
   */
  private chunkCache: { step: number; live: WorkerView[]; at: number; fn: (w: WorkerView) => number } | null = null;

  private chunksFor(live: WorkerView[], step: number, stepSize: number, now: number): (w: WorkerView) => number {
    const c = this.chunkCache;
    if (c && c.step === step && c.live === live && now - c.at < 1000) return c.fn;
    const fn = this.chunks(live, stepSize);
    this.chunkCache = { step, live, at: now, fn };
    return fn;
  }

  private chunks(live: WorkerView[], stepSize: number): (w: WorkerView) => number {
    const known = live.map((x) => x.samplesPerSec).filter((x) => x > 0).sort((a, b) => a - b);
    const fallback = known.length ? known[Math.floor(known.length / 2)] : 1;
    const rate = (x: WorkerView) => (x.samplesPerSec > 0 ? x.samplesPerSec : fallback);
    const total = live.reduce((a, x) => a + rate(x), 0);
    const base = stepSize >= live.length ? 1 : 0;
    const spread = stepSize - base * live.length;
    const share = new Map<string, number>();
    const rest: Array<[string, number]> = [];
    let given = 0;
    for (const x of live) {
      const exact = (spread * rate(x)) / total;
      const whole = Math.floor(exact + 1e-9);
      share.set(x.id, base + whole);
      given += whole;
      rest.push([x.id, exact - whole]);
    }
    rest.sort((a, b) => b[1] - a[1]);
    for (let i = 0; i < rest.length && given < spread; i++, given++) share.set(rest[i][0], share.get(rest[i][0])! + 1);
    return (w) => Math.max(1, Math.min(share.get(w.id) ?? 1, w.plan.microBatch, this.cfg.maxMicroBatch));
  }

  /**
   * The params message of the current version. encodeOnce: every worker of a version gets the same
   * frame bytes, packed once, instead of a 4-bytes-per-parameter copy per worker. The optimizer
   * updates trainer.params in place only together with version + 1, and a message is only sent
   * while its version is current; a replaced params array (restore) also makes a new message.
   */
  private paramsMessage(): ParamsMsg {
    const t = this.trainer;
    const m = this.paramsMsg;
    if (m && m.version === t.version && m.step === t.step && m.params === t.params) return m;
    return (this.paramsMsg = encodeOnce({ version: t.version, step: t.step, params: t.params }));
  }

  // ------------------------------------------------------------------ results

  onResult(w: WorkerView, raw: unknown, reject: Reject): void {
    const taskId = typeof (raw as { taskId?: unknown })?.taskId === 'string' ? ((raw as { taskId: string }).taskId).slice(0, 64) : undefined;
    const refuse = (code: RejectCode, message: string) => {
      this.trainer.countRejectedResult();
      reject('result', code, message, taskId);
      this.afterRefusal(w, code, taskId);
    };
    const v = validateResult(raw, { paramCount: this.trainer.paramCount, digest: true, stage: this.trainer.stageGradient });
    if (!v.ok) return refuse(v.code, v.message);
    const r = v.value;
    if ((r.packed === 'fp16') !== (this.cfg.compress === 'fp16')) {
      return refuse('BAD_SCHEMA', this.cfg.compress === 'fp16' ? 'result: this run takes fp16 gradients (grads16; --compress fp16)' : 'result: this run takes float32 gradients (grads), not grads16');
    }
    const c = this.trainer.check(r.taskId, w.id);
    if ('code' in c) return refuse(c.code, c.message);
    const info = this.leases.get(c.id);
    if (!info) return refuse('LATE', `task ${c.id} is no longer tracked`);
    const verdict = this.security.judgeResult(w, c, r, info.tokens);
    if (verdict.kind === 'later') {
      // Being re-computed on a verification thread (the lease is held meanwhile): handle the
      // result again, every check included, once the verdict is in, if this connection still is.
      const conn = this.port.connection(w);
      void verdict.until.then((go) => {
        if (go && this.port.isCurrent(w, conn)) this.onResult(w, raw, reject);
      });
      return;
    }
    if (verdict.kind === 'refuse') {
      // Refused by security: its samples are re-leased at once, not after the lease expires.
      this.trainer.current?.release(c.id, 'released');
      // Deferred: we are inside this worker's own result handler.
      const ban = verdict.ban;
      if (ban !== undefined) queueMicrotask(() => this.port.ban(w, ban));
      return refuse(verdict.code, verdict.message);
    }
    const a = this.trainer.accept(c, r, info.tokens, w.id);
    if (!a.ok) return refuse(a.code, a.message);
    this.security.noteAccepted(w.id, c);
    this.leases.delete(c.id);
    const now = Date.now();
    const n = c.ids.length;
    this.workers.measure(w, n, r.tokens, c.issuedAt, now);
    this.workers.recordDone(w, n, r.tokens);
    this.workers.markIdle(w);
    this.port.send(w, 'ack', { taskId: c.id, step: c.step });
    this.workers.publish(w);
    if (this.trainer.current?.done) this.host.advance();
    else this.host.schedule();
  }

  /**
   * A worker whose lease expired stays out of scheduling until it answers (it is slow); its
   * answer, even refused, makes it available again. A refused answer for its LIVE lease leaves the
   * lease with it (it may still send the right answer); once that lease expires (and is re-leased)
   * the worker is made schedulable again, or a NaN-producing or stale worker would sit idle
   * forever (and never show enough bad results to be banned).
   */
  private afterRefusal(w: WorkerView, code: RejectCode, taskId: string | undefined): void {
    if (taskId === undefined || w.lease !== taskId) return;
    const live = this.trainer.current?.active.get(taskId);
    if (live) return this.freeAfterExpiry(w, taskId, live.expiresAt);
    // Its late answer still measures its speed: the next lease is sized and timed for it.
    if (code === 'LATE') this.workers.measure(w, w.leaseSize, -1, w.leaseIssuedAt, Date.now());
    this.workers.markIdle(w);
    this.host.schedule();
  }

  private freeAfterExpiry(w: WorkerView, taskId: string, expiresAt: number): void {
    if (this.expiryWatch.has(taskId)) return;
    this.expiryWatch.add(taskId);
    const check = () => {
      if (w.lease !== taskId || !w.socket) return void this.expiryWatch.delete(taskId);
      // Still live (leases may be held for verification): look again later.
      if (this.trainer.current?.active.has(taskId)) return void setTimeout(check, 250).unref();
      this.expiryWatch.delete(taskId);
      this.workers.markIdle(w);
      this.host.schedule();
    };
    setTimeout(check, Math.max(0, expiresAt - Date.now()) + 50).unref();
  }

  // ------------------------------------------------------------------ leases coming back

  release(workerId: string): number {
    const released = this.trainer.current?.releaseWorker(workerId, 'released') ?? [];
    for (const l of released) this.leases.delete(l.id);
    return released.length;
  }

  expire(now: number): void {
    const expired = this.trainer.current?.expire(now) ?? [];
    for (const l of expired) {
      this.leases.delete(l.id);
      // The worker keeps its (now dead) lease id: it gets no new task until it answers or dies,
      // so the samples go to another worker.
      this.log.warn({ task: l.id, worker: l.workerId }, 'lease expired; re-leasing');
      this.bus.logEntry({ level: 'warn', kind: 'info', message: `lease ${l.id} of ${l.workerId} expired; its ${l.ids.length} samples are re-leased`, workerId: l.workerId });
    }
  }
}
