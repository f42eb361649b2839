// Work assignment for --mode diloco (the WorkAssigner of role 'round'; docs/diloco.md): a round
// leases each idle round worker H micro-batches of the data (owed rows first), sends it the
// published weights first when it lacks them (a packed `update` from the version it holds, or full
// `params`: then it starts with fresh moments), and collects packed deltas. Slow workers get fewer
// inner steps (H scaled by their measured throughput relative to the fastest) so nobody waits for
// stragglers. The round closes when every lease is answered, or --quorum deltas are in and
// --round-grace-ms has passed: unanswered leases go back to the pool and their deltas are refused
// LATE. A worker that leaves gives its rows back at once. Deltas are validated, checked against
// their lease, scored by DeltaJudge (a ban drops the worker's deltas of the running round), then
// folded into the round; the outer step runs in the scheduler's advance (afterStep hooks follow).

import type { Logger } from 'pino';
import { buildMicroBatch } from '../../shared/data/index.ts';
import { decode, packedBytes } from '../../shared/diloco/codec.ts';
import type { ParamsMsg, RejectCode } from '../../shared/protocol/messages.ts';
import { encodeOnce } from '../../shared/protocol/parser.ts';
import { validateDelta, type RoundTaskMsg } from '../../shared/protocol/round.ts';
import type { CoordinatorConfig } from '../config.ts';
import { DELTA_NORM_PENALTY, scoreFailurePenalty, type DeltaJudge, type DeltaVerdict } from '../security/delta-judge.ts';
import type { Security } from '../security/security.ts';
import type { RoundTrainer } from '../train/round-trainer.ts';
import type { Trainer } from '../train/trainer.ts';
import { onceSoon, type AssignerHost, type Reject, type WorkAssigner, type WorkerPort } from './assigner.ts';
import { LEASES_PER_PASS } from './replica-assigner.ts';
import type { EventBus } from './events.ts';
import type { WorkerRegistry, WorkerView } from './workers.ts';

export class RoundAssigner implements WorkAssigner {
  readonly role = 'round' as const;
  private started = false;
  private paramsMsg: ParamsMsg | null = null;

  constructor(
    private readonly trainer: Trainer,
    readonly rounds: RoundTrainer,
    private readonly cfg: CoordinatorConfig,
    private readonly workers: WorkerRegistry,
    private readonly security: Security,
    private readonly judge: DeltaJudge,
    private readonly port: WorkerPort,
    private readonly host: AssignerHost,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {}

  /**
   * Workers of the running round not leased yet: a round's leases go out LEASES_PER_PASS per
   * event-loop turn (as a sync step's do), since each may write the full weights to its socket
   * (0.4 MB for tiny, 0.5 GB for GPT-2 small): 1,000 of them in one turn held the loop for seconds.
   */
  private toLease: WorkerView[] = [];
  private toLeaseFastest = 0;
  /** Schedule again once the event loop has served what is waiting (a pass stopped early). */
  private readonly continueSoon = onceSoon(() => this.host.schedule());

  assign(live: WorkerView[], now: number): void {
    if (this.rounds.current) {
      if (this.toLease.length > 0) this.leaseQueued(now);
      else this.maybeClose(now, live.length);
      if (this.rounds.current) {
        const queued = new Set(this.toLease);
        for (const w of live) if (!w.lease && w.socket && !queued.has(w)) this.host.wait(w, 'no-task', `round ${this.rounds.current.round} is running; this worker joins the next one`);
        return;
      }
    }
    if (live.length === 0) return;
    if (!this.started && live.length < this.cfg.minWorkers) {
      for (const w of live) this.host.wait(w, 'no-task', `waiting for ${this.cfg.minWorkers} workers (${live.length} connected)`);
      return;
    }
    const idle = live.filter((w) => !w.lease && w.socket);
    if (idle.length === 0) return;
    this.started = true;
    const r = this.rounds.begin(now, idle.length);
    if (!r) return;
    this.toLeaseFastest = idle.reduce((m, w) => Math.max(m, w.samplesPerSec), 0);
    this.toLease = idle;
    this.leaseQueued(now);
    if (r.active.size === 0 && this.toLease.length === 0) this.rounds.close(now, live.length); // nothing could be leased: drop it
  }

  /** The next LEASES_PER_PASS queued workers of the running round (those still idle and connected). */
  private leaseQueued(now: number): void {
    const batch = this.toLease.splice(0, LEASES_PER_PASS);
    for (const w of batch) if (w.socket && !w.lease) this.leaseTo(w, this.toLeaseFastest, now);
    if (this.toLease.length > 0) this.continueSoon();
  }


  /** Inner steps for `w`: the round's H (--round-warmup, else --inner-steps), scaled down by its throughput relative to the fastest worker's. */
  private innerStepsFor(w: WorkerView, fastest: number): number {
    const H = this.rounds.roundH(this.rounds.current!.round);
    if (!(w.samplesPerSec > 0) || !(fastest > 0)) return H;
    return Math.max(1, Math.min(H, Math.round((H * w.samplesPerSec) / fastest)));
  }

  private leaseTo(w: WorkerView, fastest: number, now: number): void {
    const rt = this.rounds;
    const r = rt.current!;
    const H = this.innerStepsFor(w, fastest);
    const B = Math.max(1, Math.min(w.plan.microBatch, this.cfg.maxMicroBatch));
    const rows = rt.takeRows(H * B);
    let task: RoundTaskMsg;
    let tokens = 0;
    const expected = w.samplesPerSec > 0 ? (3000 * rows.length) / w.samplesPerSec : 0;
    const leaseMs = Math.min(100 * this.cfg.leaseMs, Math.max(this.cfg.leaseMs, expected));
    try {
      const b = buildMicroBatch(this.trainer.dataset, rows.map((x) => x.id));
      for (let i = 0; i < b.mask.length; i++) tokens += b.mask[i];
      task = {
        taskId: '', round: r.round, step: r.round, version: r.version, H, B, T: b.T,
        inputs: b.inputs, targets: b.targets, mask: b.mask, tokens, sampleIds: Uint32Array.from(rows, (x) => x.id),
        lrs: rt.lrs(r.round, H),
        hyper: { beta1: this.cfg.beta1, beta2: this.cfg.beta2, eps: this.cfg.eps, weightDecay: this.cfg.weightDecay, gradClip: this.cfg.gradClip },
        compress: rt.codecOf(r.round), codec: rt.codec, leaseMs: Math.round(leaseMs),
      };
    } catch (e) {
      rt.pool.unshift(...rows);
      this.log.error({ err: e }, 'could not build a round task');
      return;
    }
    const lease = rt.lease(w.id, H, B, rows, tokens, now, leaseMs);
    task.taskId = lease.id;
    // Sampled for re-computation on the CPU (--verify-rate): the worker starts it fresh.
    if (this.cfg.verifyRate > 0 && Math.random() < this.cfg.verifyRate) {
      lease.recompute = true;
      task.fresh = true;
    }
    this.sendWeights(w, r.version);
    this.workers.markComputing(w, lease.id, rows.length, now);
    this.port.send(w, 'round', task);
    this.workers.publish(w);
    // While the worker computes: the score's loss at the start weights and, for a sampled round,
    // the re-computation (delta-judge.ts prepare; after this turn, so the task goes out first).
    const start = rt.published;
    const round = lease.recompute ? { lrs: task.lrs, hyper: task.hyper, compress: task.compress, codec: task.codec } : undefined;
    setImmediate(() => this.judge.prepare(lease, start, round));
  }

  /** The published weights of `version` to `w`: a packed update when it holds the previous version, else full. */
  private sendWeights(w: WorkerView, version: number): void {
    if (w.paramsVersion === version) return;
    const u = this.rounds.lastUpdate;
    if (u && u.version === version && w.paramsVersion === u.fromVersion) {
      this.port.send(w, 'update', u); // packed once (encodeOnce in RoundTrainer.publish)
    } else {
      const m = this.paramsMsg;
      const msg = m && m.version === version && m.params === this.rounds.published ? m
        : (this.paramsMsg = encodeOnce({ version, step: this.trainer.step, params: this.rounds.published }));
      this.port.send(w, 'params', msg);
    }
    this.workers.markParamsSent(w, version);
  }

  onResult(w: WorkerView, raw: unknown, reject: Reject): void {
    void this.handleDelta(w, raw, reject);
  }

  private async handleDelta(w: WorkerView, raw: unknown, reject: Reject): Promise<void> {
    const rt = this.rounds;
    const taskId = typeof (raw as { taskId?: unknown })?.taskId === 'string' ? (raw as { taskId: string }).taskId.slice(0, 64) : undefined;
    const refuse = (code: RejectCode, message: string) => {
      this.trainer.countRejectedResult();
      reject('delta', code, message, taskId);
      if (taskId !== undefined && w.lease === taskId && !rt.current?.active.has(taskId)) {
        // Its lease is over (cut, expired, refused): the worker is free again.
        this.workers.markIdle(w);
        this.host.schedule();
      }
    };
    const v = validateDelta(raw, { paramCount: this.trainer.paramCount, codecs: rt.cfg.denseRounds > 0 ? [rt.compress, 'int8'] : [rt.compress] });
    if (!v.ok) {
      if (v.code === 'NON_FINITE') {
        // An honest worker never sends one (round-handler.ts keeps a round with NaN/Inf gradients
        // to itself; the codecs pack finite values): a lie, banned at once (one delta per round
        // collected penalty points too slowly: a chaos nan attacker was never banned), and its
        // lease's rows go back now.
        const l = taskId !== undefined ? rt.check(taskId, w.id) : null;
        if (l && !('code' in l)) rt.release(l.id, 'released');
        const b = this.security.reputation.banNow(w.id, `its delta holds NaN/Inf values: ${v.message.slice(0, 160)}`);
        if (b.ban) queueMicrotask(() => this.port.ban(w, b.reason));
      }
      return refuse(v.code, v.message);
    }
    const d = v.value;
    const c = rt.check(d.taskId, w.id);
    if ('code' in c) return refuse(c.code, c.message);
    if (d.round !== c.round) return refuse('WRONG_STEP', `delta.round ${d.round} != round ${c.round}`);
    if (d.version !== c.version) return refuse('STALE_VERSION', `delta.version ${d.version} != ${c.version}`);
    if (d.delta.codec !== rt.codecOf(c.round)) return refuse('BAD_SCHEMA', `delta: codec ${d.delta.codec}, round ${c.round} takes ${rt.codecOf(c.round)}`);
    if (d.tokens !== c.tokens) return refuse('TOKENS_MISMATCH', `delta.tokens ${d.tokens} != ${c.tokens} masked-in positions of the round`);
    if (c.deliveredAt !== undefined) return refuse('DUPLICATE', `round lease ${c.id}: a delta for it is already being judged`);
    const delta = decode(d.delta);
    rt.deliver(c, Date.now());
    let verdict: DeltaVerdict;
    try {
      verdict = await this.judge.judge(c, rt.published, delta);
      if (verdict.ok && c.recompute && rt.current?.active.get(c.id) === c) {
        const h = { beta1: this.cfg.beta1, beta2: this.cfg.beta2, eps: this.cfg.eps, weightDecay: this.cfg.weightDecay, gradClip: this.cfg.gradClip };
        verdict = (await this.judge.recompute(c, rt.published, delta, { lrs: rt.lrs(c.round, c.H), hyper: h, compress: rt.codecOf(c.round), codec: rt.codec })) ?? verdict;
      }
    } catch (e) {
      // A scoring thread failed, a re-computation threw, or the judge closed: the coordinator's
      // fault, not the worker's (and a delivered lease must not wait for a verdict forever).
      rt.current?.judging.delete(c.id);
      if (rt.current?.active.get(c.id) === c) rt.release(c.id, 'released');
      this.log.error({ err: e, task: c.id }, 'a delta could not be judged; its rows go back to the pool');
      return refuse('LATE', `round lease ${c.id}: its delta could not be judged (${(e as Error).message}); its rows are leased again`);
    }
    rt.current?.judging.delete(c.id);
    if (rt.current?.active.get(c.id) !== c) return refuse('LATE', `round lease ${c.id} closed while its delta was scored`);
    if (!verdict.ok) {
      rt.release(c.id, 'released');
      if (verdict.ban !== undefined) {
        // Recorded in the reputation first: the ban list, /api/status and a reconnect see it.
        // A sparse delta refused by the loss score alone is not proof (scoreFailurePenalty).
        const points = verdict.scoreOnly ? scoreFailurePenalty(rt.codecOf(c.round)) : 0;
        const v = points > 0 ? this.security.reputation.addPenalty(w.id, points, verdict.ban) : this.security.reputation.banNow(w.id, verdict.ban);
        if (v.ban) queueMicrotask(() => this.port.ban(w, v.reason));
      } else if (verdict.overshoot || verdict.code === 'NORM_OUTLIER') {
        // A delta is a whole round of work: an outlier or an overshoot (a loss-raising move both
        // ways) costs DELTA_NORM_PENALTY in all, a ban at the 4th in a row. NORM_OUTLIER brings one
        // point of its own (reputation.ts PENALTY), VERIFY_FAILED none. Before, a scaling attacker
        // whose delta still lowers the loss was banned only after 16 refused rounds, and a test
        // waiting for its ban timed out on a loaded machine.
        const v = this.security.reputation.addPenalty(w.id, verdict.overshoot ? DELTA_NORM_PENALTY : DELTA_NORM_PENALTY - 1, verdict.message);
        if (v.ban) queueMicrotask(() => this.port.ban(w, v.reason));
      }
      return refuse(verdict.code, verdict.message);
    }
    const now = Date.now();
    rt.accept(c, d.delta, d.tokens, d.loss, now);
    this.security.reputation.recordAccepted(w.id); // forgives a point (a sparse score failure costs 4)
    rt.deltaBytes += packedBytes(d.delta);
    this.workers.measure(w, c.rows.length, d.tokens, c.issuedAt, now);
    this.workers.recordDone(w, c.rows.length, d.tokens);
    this.workers.markIdle(w);
    this.port.send(w, 'ack', { taskId: c.id, step: c.round });
    this.workers.publish(w);
    this.maybeClose(now, this.workers.withRole('round').length);
    if (rt.current) this.host.schedule();
  }

  private maybeClose(now: number, workers: number): void {
    const rt = this.rounds;
    const r = rt.current;
    if (!r || this.toLease.length > 0 || !rt.closable(now)) return;
    if (r.accepted.length === 0) {
      rt.close(now, workers);
      this.log.warn({ round: r.round }, 'round dropped: no delta accepted; its rows are owed to the next round');
      return this.host.schedule();
    }
    this.host.advance(() => {
      const { point, cut } = rt.close(Date.now(), workers);
      for (const l of cut) {
        this.log.info({ round: r.round, task: l.id, worker: l.workerId }, 'round closed without this lease; its rows go back to the pool');
        this.bus.logEntry({ level: 'info', kind: 'info', message: `round ${r.round} closed without ${l.workerId}'s delta; its ${l.rows.length} rows are re-leased`, workerId: l.workerId });
      }
      rt.updateBytes += rt.lastUpdate ? packedBytes(rt.lastUpdate.update) : 0;
      return point!;
    });
  }

  release(workerId: string): number {
    const rt = this.rounds;
    const r = rt.current;
    if (!r) return 0;
    let n = rt.releaseWorker(workerId, 'released').length;
    if (this.security.isBanned(workerId)) {
      // A banned worker's deltas of the running round are dropped; their rows are owed again.
      const mine = r.accepted.filter((a) => a.workerId === workerId);
      r.accepted = r.accepted.filter((a) => a.workerId !== workerId);
      for (const a of mine) rt.pool.unshift(...a.lease.rows);
      n += mine.length;
      if (r.accepted.length < r.quorum) r.quorumMetAt = null;
    }
    return n;
  }

  expire(now: number): void {
    const r = this.rounds.current;
    if (!r) return;
    for (const l of [...r.active.values()]) {
      if (l.expiresAt > now || l.deliveredAt !== undefined) continue;
      this.rounds.release(l.id, 'expired');
      this.log.warn({ task: l.id, worker: l.workerId }, 'round lease expired; its rows go back to the pool');
      this.bus.logEntry({ level: 'warn', kind: 'info', message: `round lease ${l.id} of ${l.workerId} expired; its ${l.rows.length} rows are re-leased`, workerId: l.workerId });
    }
  }
}
