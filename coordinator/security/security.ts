// The coordinator's defences in one place, hooked into the worker hub at four points: every
// incoming packet (rate limit, unknown events), hello (bans), a result between the lease check and
// the fold-in (replay, reported-vs-true norm, norm vs the recent median, re-computation), and every
// rejection (reputation -> ban). A ban refuses the worker's id, closes its connection, releases its
// leases and discards its results already folded into the running step (re-leased to others).
// Bans are kept in the run directory (ban-file.ts): loaded at start, rewritten on every ban.

import type { Server, Socket } from 'socket.io';
import type { Logger } from 'pino';
import { C2S, type RejectCode, type ResultMsg } from '../../shared/protocol/messages.ts';
import type { SecuritySummary } from '../../shared/protocol/dashboard.ts';
import { Rng } from '../../shared/rng.ts';
import { validateResult } from '../../shared/protocol/validate.ts';
import type { MicroBatch } from '../../shared/backend.ts';
import type { CoordinatorConfig } from '../config.ts';
import type { EventBus } from '../server/events.ts';
import type { WorkerHub } from '../server/hub.ts';
import type { WorkerRecord } from '../server/workers.ts';
import type { Trainer } from '../train/trainer.ts';
import type { Lease } from '../train/step-work.ts';
import { writeBans, type BanEntry } from './ban-file.ts';
import { TokenBucket } from './rate-limit.ts';
import { gradientDigest, ReplayGuard } from './replay.ts';
import { DEFAULT_REPUTATION, Reputation } from './reputation.ts';
import { median } from './robust-aggregate.ts';
import { Verifier, type Comparison } from './verify.ts';

const KNOWN_EVENTS = new Set<string>(Object.values(C2S));
/** Accepted gradient norms remembered for the median reference. */
const NORM_WINDOW = 64;
/** Refusals by the rate limiter after which the connection is closed. */
const FLOOD_DISCONNECT = 200;

/**
 * The gate's answer. `later`: the result is being re-computed off the loop (a norm outlier); the
 * hub handles it again, every check included, when `until` resolves true (false: the coordinator
 * is closing, drop it).
 */
export type Gate = { ok: true } | { ok: false; code: RejectCode; message: string } | { ok: 'later'; until: Promise<boolean> };

/** A re-computation's verdict for one lease; cmp null: the check could not run (unverified). */
interface Verdict {
  version: number;
  cmp: Comparison | null;
}

export class Security {
  readonly reputation: Reputation;
  readonly verifier: Verifier | null;
  private readonly replay = new ReplayGuard();
  private readonly norms: number[] = [];
  private readonly stepNorms = new Map<string, number>();
  private normStep = -1;
  private readonly rng: Rng;
  private pendingDigest = new Map<string, string>();
  private readonly expiryWatch = new Set<string>();
  /** Re-computation verdicts by lease id, from preVerify() to gate(). */
  private verdicts = new Map<string, Verdict>();
  private closed = false;
  readonly counters = { rateLimited: 0, unknownEvents: 0, replays: 0, normOutliers: 0, normLies: 0, discardedResults: 0, releasedForBan: 0 };
  readonly rejectsByCode: Partial<Record<RejectCode, number>> = {};

  constructor(
    private readonly hub: WorkerHub,
    private readonly trainer: Trainer,
    private readonly cfg: CoordinatorConfig,
    private readonly bus: EventBus,
    private readonly log: Logger,
    /** The run directory's ban list: its path (rewritten on every ban) and the bans read from it. */
    private readonly bans?: { file: string; loaded: BanEntry[] },
  ) {
    this.reputation = new Reputation({ ...DEFAULT_REPUTATION, verifyRate: cfg.verifyRate, minVerifyRate: Math.min(DEFAULT_REPUTATION.minVerifyRate, cfg.verifyRate) });
    for (const b of bans?.loaded ?? []) this.reputation.restoreBan(b.id, b.reason, b.at);
    this.verifier = cfg.verifyRate > 0 ? new Verifier(trainer.model, cfg.verifyTolerance, cfg.verifyThreads) : null;
    this.rng = new Rng(cfg.seed ^ 0x5ec);
  }

  /** Per-packet guard on every worker connection (runs before the hub's handlers). */
  attach(io: Server): void {
    io.on('connection', (socket: Socket) => {
      const bucket = new TokenBucket(this.cfg.rateLimit, Math.max(10, this.cfg.rateLimit * 2));
      let refused = 0;
      socket.use((packet, next) => {
        const event = typeof packet[0] === 'string' ? packet[0].slice(0, 32) : '?';
        if (!bucket.take()) {
          this.counters.rateLimited++;
          if (++refused === FLOOD_DISCONNECT) return void socket.disconnect(true);
          if (refused % 10 === 1) this.refusePacket(socket, event, 'RATE_LIMIT', `more than ${this.cfg.rateLimit} messages/s`);
          return; // dropped: not calling next()
        }
        if (!KNOWN_EVENTS.has(event)) {
          this.counters.unknownEvents++;
          this.refusePacket(socket, event, 'BAD_SCHEMA', `unknown event "${event}"`);
          return;
        }
        // A sampled result reaches the hub once its re-computation is done (on a thread).
        if (event === C2S.result && this.preVerify(socket, packet[1], () => next())) return;
        next();
      });
    });
  }

  private refusePacket(socket: Socket, event: string, code: RejectCode, message: string): void {
    socket.emit('reject', { event, code, message });
    const w = this.hub.workers.connected().find((x) => x.socket === socket);
    if (!w) return;
    this.hub.workers.countReject(w, code);
    this.bus.emit('reject', { workerId: w.id, code });
    this.bus.emit('worker', { op: 'update', worker: this.hub.workers.row(w) });
    this.onRejected(w, code);
  }

  /**
   * Sampling and re-computation of a result, before the hub sees it: returns true if a check was
   * started, and then calls `next` (the packet goes on to the hub) once the verdict is in. The
   * verdict is kept for gate(), which applies it (the hub still validates everything itself).
   * Meanwhile the loop serves heartbeats, other results and the API; a packet whose connection
   * closed meanwhile is dropped (its leases were released with the connection).
   */
  private preVerify(socket: Socket, raw: unknown, next: () => void): boolean {
    if (!this.verifier) return false;
    const w = this.hub.workers.connected().find((x) => x.socket === socket);
    if (!w || this.rng.next() >= this.reputation.verifyProbability(w.id)) return false;
    const v = validateResult(raw, { paramCount: this.trainer.paramCount });
    if (!v.ok) return false;
    const lease = this.trainer.check(v.value.taskId, w.id);
    if ('code' in lease || v.value.version !== this.trainer.version || v.value.version !== lease.version) return false;
    const { batch } = this.trainer.batchOf(lease);
    void this.verifyOffLoop(lease, batch, v.value.loss, v.value.grads).then((go) => {
      if (go && socket.connected) next();
    });
    return true;
  }

  /**
   * Re-compute a result of `lease` on a verification thread, at the current version (the caller
   * checked that it is the lease's), and keep the verdict for gate(). The lease is held (does not
   * expire) meanwhile: its answer came in time. A verdict is kept only while its lease is still live
   * at the same version: a check that outlives its lease (worker dropped or banned, step over)
   * changes nothing, and the hub refuses its result with its own codes. Resolves false when the
   * coordinator is closing (drop the packet); never rejects.
   */
  private verifyOffLoop(lease: Lease, batch: MicroBatch, loss: number, grads: Float32Array): Promise<boolean> {
    const version = this.trainer.version;
    const keep = (cmp: Comparison | null) => {
      if (this.trainer.version !== version || this.trainer.current?.active.get(lease.id) !== lease) return;
      this.verdicts.set(lease.id, { version, cmp });
      if (this.verdicts.size > 1024) this.verdicts.delete(this.verdicts.keys().next().value as string);
    };
    let job: Promise<Comparison>;
    try {
      job = this.verifier!.check(this.trainer.params, version, batch, loss, grads);
    } catch (e) {
      job = Promise.reject(e); // e.g. no memory for the parameters' copy: handled as a failed check
    }
    lease.holds = (lease.holds ?? 0) + 1;
    return job.then(
      (cmp) => {
        lease.holds!--;
        keep(cmp);
        return !this.closed;
      },
      (e: unknown) => {
        lease.holds!--;
        if (this.closed) return false;
        // A coordinator fault, not the worker's: the result goes on unverified.
        this.log.error({ err: e, task: lease.id }, 'verification could not run; the result goes on unverified');
        keep(null);
        return true;
      },
    );
  }

  /** Stop the verification threads; checks in flight are dropped with their packets. */
  async close(): Promise<void> {
    this.closed = true;
    await this.verifier?.close();
  }

  isBanned(id: string | undefined): boolean {
    return id !== undefined && this.reputation.isBanned(id);
  }

  /**
   * Checks between the lease check and the fold-in. On refusal the lease is released at once so
   * its samples are re-leased without waiting for the lease to expire.
   */
  gate(w: WorkerRecord, lease: Lease, r: ResultMsg, expectedTokens: number): Gate {
    const refuse = (code: RejectCode, message: string): Gate => {
      this.trainer.current?.release(lease.id, 'released');
      return { ok: false, code, message };
    };
    // Leave step/version/tokens mismatches to the trainer's own codes.
    if (r.step !== lease.step || r.version !== lease.version || r.tokens !== expectedTokens || r.version !== this.trainer.version) return { ok: true };
    const digest = gradientDigest(r.grads);
    const work = workKey(lease);
    const prior = this.replay.seenBy(digest, work);
    if (prior !== undefined) {
      this.counters.replays++;
      return refuse('DUPLICATE', `this gradient was already accepted for task ${prior} (replay)`);
    }
    let ss = 0;
    for (let i = 0; i < r.grads.length; i++) ss += r.grads[i] * r.grads[i];
    const norm = Math.sqrt(ss);
    if (Math.abs(norm - r.gradNorm) > 1e-2 * Math.max(norm, 1e-6)) {
      this.counters.normLies++;
      return refuse('OUT_OF_RANGE', `result.gradNorm ${r.gradNorm.toPrecision(4)} but the gradient's norm is ${norm.toPrecision(4)}`);
    }
    // Reference: recent accepted norms plus every worker's latest norm in this step, accepted or
    // not. A minority cannot move the median; when most workers' norms rise (a loss spike), the
    // reference follows instead of refusing every honest result forever.
    if (this.normStep !== lease.step) {
      this.normStep = lease.step;
      this.stepNorms.clear();
    }
    this.stepNorms.set(w.id, norm);
    const ref = [...this.norms, ...this.stepNorms.values()];
    // A norm far above the median is suspicious, not proof: some samples really have huge
    // gradients (short masked answers, a loss spike), and refusing them would refuse them from
    // every worker forever. So an outlier is re-computed now; only a mismatch is punished. Without
    // a verifier it passes here and the robust aggregators drop it from the vote at step end.
    let outlier = false;
    if (ref.length >= 4) {
      const med = median(ref);
      outlier = med > 0 && norm > this.cfg.normLimit * med;
    }
    const pre = this.verdicts.get(lease.id);
    if (outlier && this.verifier && !(pre && pre.version === this.trainer.version)) {
      // Re-computed on a thread; the hub runs this result again with the verdict in hand (and
      // it is counted as an outlier then).
      const { batch } = this.trainer.batchOf(lease);
      return { ok: 'later', until: this.verifyOffLoop(lease, batch, r.loss, r.grads) };
    }
    if (outlier) this.counters.normOutliers++;
    this.verdicts.delete(lease.id);
    if (pre && pre.version === this.trainer.version && pre.cmp) {
      const c = pre.cmp;
      const verdict = this.reputation.recordVerified(w.id, c.ok);
      if (!c.ok) {
        this.log.warn({ worker: w.id, task: lease.id, relErr: c.relErr, lossErr: c.lossErr }, 'verification mismatch');
        this.bus.logEntry({ level: 'warn', kind: 'reject', message: `${w.id}: task ${lease.id} failed re-computation (relative error ${c.relErr.toPrecision(3)})`, workerId: w.id, code: 'VERIFY_FAILED' });
        const g = refuse('VERIFY_FAILED', `re-computation differs: relative gradient error ${c.relErr.toPrecision(3)}, loss error ${c.lossErr.toPrecision(3)} (tolerance ${this.cfg.verifyTolerance})`);
        if (verdict.ban) queueMicrotask(() => this.ban(w, verdict.reason));
        return g;
      }
    }
    this.pendingDigest.set(lease.id, digest);
    this.norms.push(norm);
    if (this.norms.length > NORM_WINDOW) this.norms.shift();
    return { ok: true };
  }

  /** The result was folded in. */
  accepted(w: WorkerRecord, lease: Lease): void {
    const d = this.pendingDigest.get(lease.id);
    this.pendingDigest.delete(lease.id);
    if (d) this.replay.remember(d, lease.id, workKey(lease));
    this.reputation.recordAccepted(w.id);
  }

  /** Every rejection the hub counts lands here: penalty points, maybe a ban. */
  onRejected(w: WorkerRecord, code: RejectCode, taskId?: string): void {
    this.rejectsByCode[code] = (this.rejectsByCode[code] ?? 0) + 1;
    if (code === 'BANNED') return;
    this.freeAfterExpiry(w, taskId);
    const v = this.reputation.recordRejected(w.id, code);
    // Deferred: the hub is inside its own handler for this worker.
    if (v.ban) queueMicrotask(() => this.ban(w, v.reason));
  }

  /**
   * A refused answer for the worker's LIVE lease leaves the lease with it (it may still send the
   * right answer), but the hub keeps a worker with an unanswered lease out of scheduling until it
   * answers; this one has answered. Once the lease expires (and is re-leased), make the worker
   * schedulable again, or a NaN-producing or stale worker would sit idle forever (and never show
   * enough bad results to be banned).
   */
  private freeAfterExpiry(w: WorkerRecord, taskId: string | undefined): void {
    const lease = taskId !== undefined && w.lease === taskId ? this.trainer.current?.active.get(taskId) : undefined;
    if (!lease || this.expiryWatch.has(taskId!)) return;
    this.expiryWatch.add(taskId!);
    const check = () => {
      if (w.lease !== taskId || !w.socket) return void this.expiryWatch.delete(taskId!);
      // Still live (the hub may stretch leases): look again later.
      if (this.trainer.current?.active.has(taskId!)) return void setTimeout(check, 250).unref();
      this.expiryWatch.delete(taskId!);
      w.lease = null;
      w.state = 'idle';
      this.hub.schedule();
    };
    setTimeout(check, Math.max(0, lease.expiresAt - Date.now()) + 50).unref();
  }

  /** Ban by id and connection; discard its unverified results of the running step. */
  ban(w: WorkerRecord, reason: string): void {
    const socket = w.socket;
    const discarded = this.trainer.discardWorker(w.id);
    this.counters.discardedResults += discarded;
    if (socket) {
      socket.emit('reject', { event: 'result', code: 'BANNED', message: `banned: ${reason}` });
      socket.emit('notice', { level: 'error', message: `banned: ${reason}`, kind: 'kicked' });
    }
    this.log.warn({ worker: w.id, reason, discarded }, 'worker banned');
    this.bus.logEntry({ level: 'warn', kind: 'kick', message: `${w.id} banned: ${reason}${discarded ? `; ${discarded} accepted task(s) of this step discarded and re-leased` : ''}`, workerId: w.id, code: 'BANNED' });
    this.saveBans();
    if (socket) this.hub.dropWorker(w, 'kicked', `banned: ${reason}`);
    else this.hub.schedule();
  }

  /**
   * Rewrite the ban list with every ban in force. A failed write (disk full) is logged and the ban
   * still holds in memory; the previous file stays intact, and the next ban tries again.
   */
  private saveBans(): void {
    if (!this.bans) return;
    try {
      writeBans(this.bans.file, this.bannedList());
    } catch (e) {
      this.log.error({ err: e }, 'ban list not saved; the ban holds until restart');
      this.bus.logEntry({ level: 'error', kind: 'kick', message: (e as Error).message });
    }
  }

  private bannedList(): BanEntry[] {
    return this.reputation.banned().map((r) => ({ id: r.id, reason: r.bannedReason ?? '', at: r.bannedAt ?? 0 }));
  }

  summary(): SecuritySummary {
    const agg = this.trainer.aggregator as { name: string; heldBytes?: number };
    return {
      aggregate: agg.name,
      verifyRate: this.cfg.verifyRate,
      verifyTolerance: this.cfg.verifyTolerance,
      verified: this.verifier?.checks ?? 0,
      mismatches: this.verifier?.mismatches ?? 0,
      verifyMs: Math.round(this.verifier?.totalMs ?? 0),
      heldGradientBytes: agg.heldBytes ?? 0,
      counters: { ...this.counters },
      rejectsByCode: { ...this.rejectsByCode } as Record<string, number>,
      banned: this.bannedList(),
      trust: Object.fromEntries([...this.hub.workers.byId.keys()].map((id) => {
        const r = this.reputation.get(id);
        return [id, { trust: this.reputation.trust(id), verifiedOk: r.verifiedOk, mismatches: r.mismatches, penalty: r.penalty, banned: r.banned, verifyProbability: this.reputation.verifyProbability(id) }];
      })),
    };
  }
}

/** What a result answers: the same positions at the same version give the same gradient. */
function workKey(l: Lease): string {
  return `${l.step}.${l.version}.${l.start}-${l.end}`;
}

export function attachSecurity(io: Server, hub: WorkerHub, trainer: Trainer, cfg: CoordinatorConfig, bus: EventBus, log: Logger, bans?: { file: string; loaded: BanEntry[] }): Security {
  const s = new Security(hub, trainer, cfg, bus, log, bans);
  s.attach(io);
  hub.security = s;
  return s;
}
