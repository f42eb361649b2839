// The coordinator's defences in one place: a POLICY consulted at four points, which answers with a
// verdict (verdict.ts) that the owner of the state carries out. Every incoming packet (rate limit,
// unknown events, sampled re-computation: judgePacket, by the gateway), hello (isBanned), a result
// between the lease check and the fold-in (replay, reported-vs-true norm, norm vs the recent median,
// re-computation: judgeResult, by the replica assigner), and every rejection (reputation -> ban:
// judgeRejection, by the gateway). A ban is carried out by the gateway: it refuses the worker's id,
// closes its connection, releases its leases and discards its results already folded into the
// running step (re-leased to others); recordBan() then logs it and rewrites the ban list.
// Security owns its own state only: reputation, replay digests, norm window, verification verdicts,
// counters. Bans are kept in the run directory (ban-file.ts): loaded at start, rewritten on every ban.
// Issue 17: results unlike the accepted ones are re-computed whatever the worker's trust
// (unusual.ts); a check that cannot run refuses the result under --verify-fail closed (default);
// a fresh identity from an address that had bans in the last hour serves a longer probation.

import type { Logger } from 'pino';
import { C2S, type RejectCode, type ResultMsg } from '../../shared/protocol/messages.ts';
import type { SecuritySummary } from '../../shared/protocol/dashboard.ts';
import { Rng } from '../../shared/rng.ts';
import { measuredNorm, validateResult } from '../../shared/protocol/validate.ts';
import type { MicroBatch } from '../../shared/backend.ts';
import type { CoordinatorConfig } from '../config.ts';
import { l2Norm } from '../../shared/optim/clip.ts';
import type { EventBus } from '../server/events.ts';
import type { WorkerView } from '../server/workers.ts';
import type { Trainer } from '../train/trainer.ts';
import type { Lease } from '../train/step-work.ts';
import { writeBans, type BanEntry } from './ban-file.ts';
import { SortedValues } from './sorted-values.ts';
import { answersHeldLease, STAGE_PACKET_COST, TokenBucket } from './rate-limit.ts';
import { gradientDigest, ReplayGuard } from './replay.ts';
import { DEFAULT_REPUTATION, Reputation } from './reputation.ts';
import { ACCEPT, type Accept, type Ban, type Later, type PacketVerdict, type Refuse } from './verdict.ts';
import { Verifier, type Comparison } from './verify.ts';
import { BIAS_TOLERANCE_DIVISOR } from './verify-compare.ts';
import { features, UnusualGuard, type Features } from './unusual.ts';

const KNOWN_EVENTS = new Set<string>(Object.values(C2S));
/** Accepted gradient norms remembered for the median reference. */
const NORM_WINDOW = 64;
/** Refusals by the rate limiter after which the connection is closed. */
const FLOOD_DISCONNECT = 200;
/** Bans from one address count against its new identities for this long. */
const ORIGIN_MEMORY_MS = 3_600_000;
/** Extra always-verified results per recent ban of the address, and the most a probation asks. */
const PROBATION_PER_BAN = 4;
const PROBATION_MAX = 32;

/** A re-computation's outcome for one lease; cmp null: the check could not run (unverified). */
interface Recomputed {
  version: number;
  cmp: Comparison | null;
}

/** Per-connection state of the packet guard (guardConnection()). */
export interface PacketGuard {
  readonly bucket: TokenBucket;
  /** Packets refused by the rate limiter on this connection. */
  refused: number;
}

export class Security {
  readonly reputation: Reputation;
  readonly verifier: Verifier | null;
  private readonly replay = new ReplayGuard();
  private readonly norms: number[] = [];
  private readonly stepNorms = new Map<string, number>();
  /** The median reference (norms + stepNorms' values), kept sorted as they change. */
  private readonly normRef = new SortedValues();
  private normStep = -1;
  private readonly rng: Rng;
  private pendingDigest = new Map<string, string>();
  /** Re-computation outcomes by lease id, from preVerify() to judgeResult(). */
  private verdicts = new Map<string, Recomputed>();
  private closed = false;
  private readonly unusual = new UnusualGuard();
  /** Features of results judged in preVerify, by lease id, until accepted (they join the window). */
  private pendingFeatures = new Map<string, Features>();
  /** Address of each identity (its latest hello) and ban times per address. */
  private readonly originOf = new Map<string, string>();
  private readonly originBans = new Map<string, number[]>();
  readonly counters = {
    rateLimited: 0, unknownEvents: 0, replays: 0, normOutliers: 0, normLies: 0, discardedResults: 0, releasedForBan: 0,
    /** Results re-computed because they looked unlike the accepted ones (not sampled). */
    unusual: 0,
    /** Sampled results whose check could not run: refused and re-leased (closed) or accepted unverified (open). */
    unverifiedRefused: 0, unverifiedAccepted: 0,
    /** Fresh identities given a longer probation (their address had recent bans). */
    extendedProbation: 0,
  };
  readonly rejectsByCode: Partial<Record<RejectCode, number>> = {};

  constructor(
    private readonly trainer: Trainer,
    private readonly cfg: CoordinatorConfig,
    private readonly bus: EventBus,
    private readonly log: Logger,
    /** The run directory's ban list: its path (rewritten on every ban) and the bans read from it. */
    private readonly bans?: { file: string; loaded: BanEntry[] },
    /** Ids of the workers the coordinator knows (the trust table of summary()). */
    private readonly workerIds: () => Iterable<string> = () => [],
  ) {
    this.reputation = new Reputation({ ...DEFAULT_REPUTATION, verifyRate: cfg.verifyRate, minVerifyRate: Math.min(DEFAULT_REPUTATION.minVerifyRate, cfg.verifyRate) });
    for (const b of bans?.loaded ?? []) this.reputation.restoreBan(b.id, b.reason, b.at);
    this.verifier = cfg.verifyRate > 0 ? new Verifier(trainer.model, cfg.verifyTolerance, cfg.verifyThreads) : null;
    this.rng = new Rng(cfg.seed ^ 0x5ec);
  }

  /** A new connection's packet guard (its rate-limit bucket), for judgePacket(). */
  guardConnection(): PacketGuard {
    return { bucket: new TokenBucket(this.cfg.rateLimit, Math.max(10, this.cfg.rateLimit * 2)), refused: 0 };
  }

  /**
   * Every incoming packet, before the gateway's handlers: rate limit (a flood is dropped, refused
   * every 10th packet, disconnected at FLOOD_DISCONNECT), unknown events, and for a result of a
   * sampled worker `later` (its re-computation runs first). `w`: the worker of this connection,
   * null before hello.
   */
  judgePacket(guard: PacketGuard, event: string, payload: unknown, w: WorkerView | null): PacketVerdict {
    if (!answersHeldLease(event, payload, w?.lease ?? null) && !guard.bucket.take(Date.now(), event === C2S.stageOut ? STAGE_PACKET_COST : 1)) {
      this.counters.rateLimited++;
      if (++guard.refused === FLOOD_DISCONNECT) return { kind: 'disconnect' };
      if (guard.refused % 10 === 1) return { kind: 'refuse', code: 'RATE_LIMIT', message: `more than ${this.cfg.rateLimit} messages/s` };
      return { kind: 'drop' };
    }
    if (!KNOWN_EVENTS.has(event)) {
      this.counters.unknownEvents++;
      return { kind: 'refuse', code: 'BAD_SCHEMA', message: `unknown event "${event}"` };
    }
    // A sampled result reaches the gateway's handler once its re-computation is done (on a thread).
    if (event === C2S.result) {
      const until = this.preVerify(w, payload);
      if (until) return { kind: 'later', until };
    }
    return ACCEPT;
  }

  /**
   * Sampling and re-computation of a result, before the gateway handles it: returns the check's
   * promise if one was started (the packet goes on when it resolves true), else null. The outcome
   * is kept for judgeResult(), which applies it (the result is still validated in full there).
   * Meanwhile the loop serves heartbeats, other results and the API; a packet whose connection
   * closed meanwhile is dropped (its leases were released with the connection).
   */
  private preVerify(w: WorkerView | null, raw: unknown): Promise<boolean> | null {
    if (!this.verifier || !w) return null;
    const sampled = this.rng.next() < this.reputation.verifyProbability(w.id);
    const v = validateResult(raw, { paramCount: this.trainer.paramCount, digest: true, stage: this.trainer.stageGradient });
    if (!v.ok) return null;
    const lease = this.trainer.check(v.value.taskId, w.id);
    if ('code' in lease || v.value.version !== this.trainer.version || v.value.version !== lease.version) return null;
    // Unlike the accepted results? Then re-computed even when not sampled (a sleeper, colluders).
    const f = features(v.value.grads, this.trainer.lastAggregate);
    this.pendingFeatures.set(lease.id, f);
    if (this.pendingFeatures.size > 4096) this.pendingFeatures.delete(this.pendingFeatures.keys().next().value as string);
    const why = this.unusual.judge(f, w.id); // every result adds to its worker's sums
    if (!sampled && !why) return null;
    if (why && !sampled) {
      this.counters.unusual++;
      this.log.info({ worker: w.id, task: lease.id, why }, 'unusual result: re-computed');
    }
    const { batch } = this.trainer.batchOf(lease);
    return this.verifyOffLoop(lease, batch, v.value.loss, v.value.grads);
  }

  /**
   * Re-compute a result of `lease` on a verification thread, at the current version (the caller
   * checked that it is the lease's), and keep the outcome for judgeResult(). The lease is held (does
   * not expire) meanwhile: its answer came in time. An outcome is kept only while its lease is still
   * live at the same version: a check that outlives its lease (worker dropped or banned, step over)
   * changes nothing, and the assigner refuses its result with its own codes. Resolves false when the
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
    // The step's own hold: the lease does not expire while its answer is being checked.
    const unhold = this.trainer.current?.hold(lease) ?? (() => {});
    return job.then(
      (cmp) => {
        unhold();
        keep(cmp);
        return !this.closed;
      },
      (e: unknown) => {
        unhold();
        if (this.closed) return false;
        // A coordinator fault, not the worker's: judgeResult refuses it without penalty and it is
        // re-leased (--verify-fail closed), or accepts it unverified (open).
        this.log.error({ err: e, task: lease.id, verifyFail: this.cfg.verifyFail }, this.cfg.verifyFail === 'open'
          ? 'verification could not run; the result goes on unverified (--verify-fail open)'
          : 'verification could not run; the result is refused and its samples re-leased (--verify-fail closed)');
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
   * Checks between the lease check and the fold-in. A refusal means: release the lease at once (so
   * its samples are re-leased without waiting for it to expire), refuse the result, and ban the
   * worker when `ban` is set; the replica assigner carries that out.
   */
  judgeResult(w: WorkerView, lease: Lease, r: ResultMsg, expectedTokens: number): Accept | Refuse | Later {
    const refuse = (code: RejectCode, message: string, ban?: string): Refuse => ({ kind: 'refuse', code, message, ...(ban !== undefined ? { ban } : {}) });
    // Leave step/version/tokens mismatches to the trainer's own codes.
    if (r.step !== lease.step || r.version !== lease.version || r.tokens !== expectedTokens || r.version !== this.trainer.version) return ACCEPT;
    const digest = gradientDigest(r.grads);
    const work = workKey(lease);
    const prior = this.replay.seenBy(digest, work);
    if (prior !== undefined) {
      this.counters.replays++;
      return refuse('DUPLICATE', `this gradient was already accepted for task ${prior} (replay)`);
    }
    const norm = measuredNorm(r.grads) ?? l2Norm(r.grads); // measured in validateResult's finite scan
    if (Math.abs(norm - r.gradNorm) > 1e-2 * Math.max(norm, 1e-6)) {
      this.counters.normLies++;
      return refuse('OUT_OF_RANGE', `result.gradNorm ${r.gradNorm.toPrecision(4)} but the gradient's norm is ${norm.toPrecision(4)}`);
    }
    // Reference: recent accepted norms plus every worker's latest norm in this step, accepted or
    // not. A minority cannot move the median; when most workers' norms rise (a loss spike), the
    // reference follows instead of refusing every honest result forever.
    if (this.normStep !== lease.step) {
      this.normStep = lease.step;
      for (const x of this.stepNorms.values()) this.normRef.remove(x);
      this.stepNorms.clear();
    }
    const before = this.stepNorms.get(w.id);
    if (before !== undefined) this.normRef.remove(before);
    this.stepNorms.set(w.id, norm);
    this.normRef.add(norm);
    // A norm far above the median is suspicious, not proof: some samples really have huge
    // gradients (short masked answers, a loss spike), and refusing them would refuse them from
    // every worker forever. So an outlier is re-computed now; only a mismatch is punished. Without
    // a verifier it passes here and the robust aggregators drop it from the vote at step end.
    let outlier = false;
    if (this.normRef.size >= 4) {
      const med = this.normRef.median();
      outlier = med > 0 && norm > this.cfg.normLimit * med;
    }
    const pre = this.verdicts.get(lease.id);
    if (outlier && this.verifier && !(pre && pre.version === this.trainer.version)) {
      // Re-computed on a thread; the assigner runs this result again with the outcome in hand (and
      // it is counted as an outlier then).
      const { batch } = this.trainer.batchOf(lease);
      return { kind: 'later', until: this.verifyOffLoop(lease, batch, r.loss, r.grads) };
    }
    if (outlier) this.counters.normOutliers++;
    this.verdicts.delete(lease.id);
    if (pre && pre.version === this.trainer.version && pre.cmp === null) {
      if (this.cfg.verifyFail !== 'open') {
        this.counters.unverifiedRefused++;
        return refuse('UNVERIFIED', 'the re-computation of this result could not run; its samples are re-leased (--verify-fail closed)');
      }
      this.counters.unverifiedAccepted++;
    }
    if (pre && pre.version === this.trainer.version && pre.cmp) {
      const c = pre.cmp;
      const verdict = this.reputation.recordVerified(w.id, c.ok);
      if (!c.ok) {
        this.log.warn({ worker: w.id, task: lease.id, relErr: c.relErr, lossErr: c.lossErr, biasErr: c.biasErr }, 'verification mismatch');
        this.bus.logEntry({ level: 'warn', kind: 'reject', message: `${w.id}: task ${lease.id} failed re-computation (relative error ${c.relErr.toPrecision(3)})`, workerId: w.id, code: 'VERIFY_FAILED' });
        return refuse('VERIFY_FAILED', `re-computation differs: relative gradient error ${c.relErr.toPrecision(3)}, loss error ${c.lossErr.toPrecision(3)}, mean-difference error ${c.biasErr.toPrecision(3)} (tolerance ${this.cfg.verifyTolerance}; mean difference ${this.cfg.verifyTolerance / BIAS_TOLERANCE_DIVISOR})`,
          verdict.ban ? verdict.reason : undefined);
      }
    }
    this.pendingDigest.set(lease.id, digest);
    this.norms.push(norm);
    this.normRef.add(norm);
    if (this.norms.length > NORM_WINDOW) this.normRef.remove(this.norms.shift()!);
    return ACCEPT;
  }

  /** The result was folded in: remember its digest (replay) and credit the worker. */
  noteAccepted(workerId: string, lease: Lease): void {
    const d = this.pendingDigest.get(lease.id);
    this.pendingDigest.delete(lease.id);
    if (d) this.replay.remember(d, lease.id, workKey(lease));
    this.reputation.recordAccepted(workerId);
    const f = this.pendingFeatures.get(lease.id);
    this.pendingFeatures.delete(lease.id);
    if (f) this.unusual.accept(f);
  }

  /**
   * Is this identity bound by the per-step share cap (server/share-cap.ts)? Yes while it is not
   * trusted yet (probation, or a mismatch on record) and while its address had a ban in the last
   * hour; no when nothing is verified at all (then only addresses with bans are).
   */
  shareCapped(id: string, now = Date.now()): boolean {
    const origin = this.originOf.get(id);
    if (origin !== undefined && (this.originBans.get(origin) ?? []).some((t) => now - t < ORIGIN_MEMORY_MS)) return true;
    if (!this.verifier) return false;
    const r = this.reputation.get(id);
    return r.mismatches > 0 || r.verifiedOk < (r.probation ?? this.reputation.opts.probation);
  }

  /**
   * A hello was welcomed: remember the identity's address; a FRESH identity (no resumed id) from an
   * address with k bans in the last hour serves PROBATION_PER_BAN x k more always-verified results,
   * and is then sampled (1 + k) times as often as the base rate: a Sybil pays for each new identity
   * with honest work that is checked, not trusted, and after ~9 bans in an hour everything it sends
   * is checked.
   */
  noteIdentity(id: string, origin: string, fresh: boolean, now = Date.now()): void {
    this.originOf.set(id, origin);
    if (!fresh) return;
    const recent = (this.originBans.get(origin) ?? []).filter((t) => now - t < ORIGIN_MEMORY_MS);
    this.originBans.set(origin, recent);
    if (recent.length === 0) return;
    const base = this.reputation.opts.probation;
    this.reputation.setProbation(id, Math.min(PROBATION_MAX, base + PROBATION_PER_BAN * recent.length), 1 + recent.length);
    this.counters.extendedProbation++;
  }

  /** Every rejection the gateway counts lands here: penalty points, maybe a ban. */
  judgeRejection(workerId: string, code: RejectCode): Accept | Ban {
    this.rejectsByCode[code] = (this.rejectsByCode[code] ?? 0) + 1;
    if (code === 'BANNED') return ACCEPT;
    const v = this.reputation.recordRejected(workerId, code);
    return v.ban ? { kind: 'ban', reason: v.reason } : ACCEPT;
  }

  /**
   * A ban was carried out (gateway.ban): `discarded` accepted tasks of the running step were
   * discarded. Logs it and rewrites the ban list.
   */
  recordBan(workerId: string, reason: string, discarded: number, now = Date.now()): void {
    this.counters.discardedResults += discarded;
    const origin = this.originOf.get(workerId);
    if (origin !== undefined) this.originBans.set(origin, [...(this.originBans.get(origin) ?? []), now]);
    this.log.warn({ worker: workerId, reason, discarded }, 'worker banned');
    this.bus.logEntry({ level: 'warn', kind: 'kick', message: `${workerId} banned: ${reason}${discarded ? `; ${discarded} accepted task(s) of this step discarded and re-leased` : ''}`, workerId, code: 'BANNED' });
    this.saveBans();
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
    const agg = this.trainer.aggregator;
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
      trust: Object.fromEntries([...this.workerIds()].map((id) => {
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
