// Work assignment for pipeline stages (the WorkAssigner of role 'stage', docs/pipeline.md): workers
// too small for the whole model are grouped into complete pipelines by the same planner `npm run
// simulate` uses (formPipelines); each pipeline is a data-parallel unit like a replica: it is
// leased a throughput share of the step's batch, which runs through its stages as micro-batches
// (GPipe with re-materialisation, several in flight: pipeline-relay.ts), and its stages' gradient
// sums come back as ONE full-size result for the trainer. Its samples are acknowledged only then:
// a stage that dies or leaves mid-share sends the whole share back to the step's pool (the same
// exactly-once ledger as replicas), and its pipeline takes a waiting worker that fits the empty
// stage (which downloads its slice) or is dissolved so the rest re-form. Pipelines are re-formed
// from scratch only with hysteresis (shouldRebalance: clearly faster, several checks in a row),
// between shares (rebalanceCheck).
// Why this file is long: formation, leasing, relaying, churn and the hand-over to the trainer all
// change the same pipeline records; the share's own state machine lives in pipeline-relay.ts, the
// CPU re-computation in stage-verify.ts / security/stage-recompute.ts (on the verification threads).

import type { Logger } from 'pino';
import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { buildStageTable, gatherStage, type StageTable } from '../../shared/model/stage.ts';
import { estimatePipelineTokensPerSec, formPipelines, REBALANCE_RATIO, shouldRebalance, type PlannedPipeline } from '../../shared/memory/pipeline-plan.ts';
import { stageBytes, stageShape, wholeModelTokensPerSec } from '../../shared/memory/stage-memory.ts';
import { l2Norm } from '../../shared/optim/clip.ts';
import type { PipelineStatus } from '../../shared/protocol/dashboard.ts';
import type { RejectCode, ResultMsg } from '../../shared/protocol/messages.ts';
import { stageOutHeader, validateStageOut, type StageTaskMsg } from '../../shared/protocol/stage.ts';
import { Rng } from '../../shared/rng.ts';
import type { CoordinatorConfig } from '../config.ts';
import type { Security } from '../security/security.ts';
import type { Trainer } from '../train/trainer.ts';
import type { AssignerHost, Reject, WorkAssigner, WorkerPort } from './assigner.ts';
import type { EventBus } from './events.ts';
import { ShareRun, type Outgoing } from './pipeline-relay.ts';
import { shareCheckOf, type StageMismatch } from './stage-verify.ts';
import type { WorkerRegistry, WorkerView } from './workers.ts';

/** Rebalancing needs this many clearly-faster checks in a row (one per finished share). */
const REBALANCE_CHECKS = 3;

interface Stage {
  workerId: string;
  table: StageTable;
}

interface Pipeline {
  id: string;
  stages: Stage[];
  microBatch: number;
  inFlight: number;
  share: ShareRun | null;
  /**
   * Stages of the running share that compile its shape first (new to these blocks or this shape
   * on this connection), and the lease to count once they have all answered: until then the share
   * has the longest lease (10 x --lease-ms), so a 20-40 s SwiftShader compile is not timed.
   */
  compiling: { stages: Map<number, string>; leaseMs: number } | null;
  /** Measured over finished shares (EMA); 0: unknown yet. */
  tokensPerSec: number;
  samplesPerSec: number;
  bubble: number;
}

/**
 * --objective dpo: a micro-batch holds whole pairs (the head weights a pair's two rows by both of
 * their log-probs), so the planner's size is rounded down to even, and 1 up to 2 (one row more
 * than planned: the smallest unit of preference data).
 */
export function pairMicroBatch(mb: number): number {
  return Math.max(2, mb - (mb % 2));
}

export class StageAssigner implements WorkAssigner {
  readonly role = 'stage' as const;
  private readonly pipelines = new Map<string, Pipeline>();
  private readonly memberOf = new Map<string, string>();
  /** Which stage slice (version, layers) each worker's current connection holds. */
  private readonly held = new Map<string, { conn: object | null; key: string }>();
  /** Which stage shape (layers, micro-batch x seq) each worker's current connection has compiled. */
  private readonly compiled = new Map<string, { conn: object | null; key: string }>();
  /** The latest reject function of each worker's connection (a share's verdict may name any stage). */
  private readonly rejects = new Map<string, Reject>();
  /** Per worker: measured speed on the whole-model scale (tokens/s, EMA over its shares), for formation. */
  private readonly speed = new Map<string, number>();
  /** A share finished since the last rebalancing check (speeds changed). */
  private checkDue = false;
  /** Consecutive checks that found re-forming clearly faster (REBALANCE_CHECKS in a row re-form). */
  private clearlyFaster = 0;
  /** Shares of the running step the trainer accepted, with their stage workers: a ban of one discards them (gateway.ban). */
  private accepted = { step: -1, shares: new Map<string, { pipeline: string; workers: string[] }>() };
  private seq = 0;
  private formedFor = '';
  private rebalancing = false;
  private readonly rng: Rng;
  private readonly model: ModelConfig;

  constructor(
    private readonly trainer: Trainer,
    private readonly cfg: CoordinatorConfig,
    private readonly seqLen: number,
    private readonly workers: WorkerRegistry,
    private readonly security: Security,
    private readonly port: WorkerPort,
    private readonly host: AssignerHost,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {
    this.model = trainer.model;
    this.rng = new Rng(cfg.seed ^ 0x57a6e);
  }

  // ------------------------------------------------------------------ formation

  /** Pipelines as /api/status reports them. */
  status(now = Date.now()): PipelineStatus[] {
    return [...this.pipelines.values()].map((p) => ({
      id: p.id,
      stages: p.stages.map((s) => ({
        workerId: s.workerId, layers: [s.table.spec.from, s.table.spec.to] as [number, number], embeddings: s.table.embeddings, head: s.table.head, inFlight: p.inFlight,
      })),
      inFlight: p.inFlight,
      microBatch: p.microBatch,
      bubble: p.share ? p.share.bubble(now) : p.bubble,
      tokensPerSec: p.tokensPerSec,
    }));
  }

  /**
   * `fill`: an unmeasured worker counts at REBALANCE_RATIO x the median measured speed, so the plan
   * has an estimate: its speed is a guess, so a re-forming that relies on it must win clearly even
   * then (at the plain median, the noise of a loaded machine alone re-formed for an equal newcomer).
   */
  private candidates(ws: WorkerView[], fill = false) {
    const known = ws.map((w) => this.speed.get(w.id) ?? 0).filter((v) => v > 0).sort((a, b) => a - b);
    const median = fill && known.length ? REBALANCE_RATIO * known[Math.floor(known.length / 2)] : 0;
    return ws.map((w) => ({
      id: w.id, budgetBytes: w.plan.budgetBytes,
      ...(this.speed.get(w.id) || median ? { tokensPerSec: this.speed.get(w.id) || median } : {}),
      ...(w.hello.limits.maxBufferSize ? { maxBufferSize: w.hello.limits.maxBufferSize } : {}),
      ...(w.hello.limits.maxStorageBufferBindingSize ? { maxStorageBufferBindingSize: w.hello.limits.maxStorageBufferBindingSize } : {}),
    }));
  }

  private plan(ws: WorkerView[], fill = false) {
    return formPipelines(this.model, this.candidates(ws, fill), { seqLen: this.seqLen, maxMicroBatch: this.cfg.maxMicroBatch });
  }

  private create(pp: PlannedPipeline): Pipeline {
    const p: Pipeline = {
      id: `p${++this.seq}`,
      stages: pp.stages.map((s) => ({ workerId: s.workerId, table: buildStageTable(this.model, { from: s.layers[0], to: s.layers[1] }) })),
      microBatch: this.trainer.objective === 'dpo' ? pairMicroBatch(pp.microBatch) : pp.microBatch, inFlight: pp.inFlight, share: null, compiling: null, tokensPerSec: 0, samplesPerSec: 0, bubble: 0,
    };
    this.pipelines.set(p.id, p);
    for (const s of p.stages) this.join(p, s);
    this.log.info({ pipeline: p.id, stages: p.stages.map((s) => `${s.workerId}[${s.table.spec.from},${s.table.spec.to})`), microBatch: p.microBatch }, 'pipeline formed');
    this.bus.logEntry({ level: 'info', kind: 'info', message: `pipeline ${p.id} formed: ${p.stages.map((s) => `${s.workerId} blocks [${s.table.spec.from}, ${s.table.spec.to})`).join(', ')}; micro-batch ${p.microBatch}, ${p.inFlight} in flight` });
    return p;
  }

  private join(p: Pipeline, s: Stage): void {
    this.memberOf.set(s.workerId, p.id);
    const w = this.workers.byId.get(s.workerId);
    if (w) {
      this.workers.markStage(w, { layers: [s.table.spec.from, s.table.spec.to], pipeline: p.id });
      this.workers.publish(w);
    }
  }

  /** Dissolve `p`: its workers wait to be formed again. */
  private dissolve(p: Pipeline, why: string): void {
    this.abortShare(p, why);
    this.pipelines.delete(p.id);
    for (const s of p.stages) {
      this.memberOf.delete(s.workerId);
      const w = this.workers.byId.get(s.workerId);
      if (w) {
        this.workers.markStage(w, null);
        this.workers.publish(w);
      }
    }
    this.formedFor = '';
    this.log.info({ pipeline: p.id }, `pipeline dissolved: ${why}`);
    this.bus.logEntry({ level: 'info', kind: 'info', message: `pipeline ${p.id} dissolved: ${why}` });
  }

  /** Form pipelines from the workers in none (a join alone never moves a worker of a running pipeline). */
  private form(live: WorkerView[]): void {
    const free = live.filter((w) => !this.memberOf.has(w.id));
    if (free.length === 0) return;
    const key = free.map((w) => w.id).sort().join(',');
    if (key === this.formedFor) return;
    this.formedFor = key;
    const fresh = this.plan(free, true); // counted as rebalanceCheck counts them, so a re-forming builds what it proposed
    for (const pp of fresh.pipelines) this.create(pp);
    for (const l of fresh.leftOver) {
      const w = this.workers.byId.get(l.id);
      if (w) this.host.wait(w, 'no-task', `no pipeline yet: ${l.reason}`);
    }
  }

  /**
   * Rebalancing with hysteresis (Petals' 1/0.75 rule), checked after each finished share while
   * stage workers wait outside the pipelines: the planner's estimate for the running pipelines
   * (their cuts, their members' measured speeds) against its estimate for re-forming from every
   * live stage worker (an unmeasured one at 0.75 x the median measured speed). Both sides come from the
   * same estimator, so relay latency and the bubble cancel out (a measured wall-clock rate against
   * the planner's ideal made every proposal look faster). One share's speed is noisy, so only
   * REBALANCE_CHECKS clearly faster answers in a row stop the leasing; the running shares finish,
   * then every pipeline is re-formed (assign).
   */
  private rebalanceCheck(live: WorkerView[]): void {
    if (!this.checkDue || this.rebalancing) return;
    this.checkDue = false;
    const no = () => void (this.clearlyFaster = 0);
    if (this.pipelines.size === 0 || live.every((w) => this.memberOf.has(w.id))) return no();
    let current = 0;
    for (const p of this.pipelines.values()) {
      const stages = p.stages.map((s) => ({ layers: [s.table.spec.from, s.table.spec.to] as [number, number], tokensPerSec: this.speed.get(s.workerId) ?? 0 }));
      if (stages.some((s) => !(s.tokensPerSec > 0))) return no(); // a member not measured yet
      current += estimatePipelineTokensPerSec(this.model, stages, p.inFlight);
    }
    const proposed = this.plan(live, true).pipelines.reduce((a, pp) => a + (pp.tokensPerSec ?? 0), 0);
    if (!shouldRebalance(current, proposed)) return no();
    if (++this.clearlyFaster < REBALANCE_CHECKS) return;
    this.clearlyFaster = 0;
    this.rebalancing = true;
    const tps = (v: number) => Math.round(v * 10) / 10;
    this.log.info({ current: tps(current), proposed: tps(proposed) }, 'pipelines will be re-formed after their shares (clearly faster)');
    this.bus.logEntry({ level: 'info', kind: 'info', message: `pipelines will be re-formed after their running shares: the planner expects ${tps(proposed)} tokens/s against ${tps(current)} now (more than 1/${REBALANCE_RATIO}, ${REBALANCE_CHECKS} checks in a row)` });
  }

  /** The empty stage of `p` (worker `gone` left): a free worker that fits takes it, else null. */
  private refill(p: Pipeline, idx: number): WorkerView | null {
    const t = p.stages[idx].table;
    const shape = stageShape(this.model, t.spec.from, t.spec.to);
    const need = stageBytes(this.model, shape, p.microBatch, this.seqLen, p.inFlight);
    const free = this.workers.withRole('stage').filter((w) => w.socket && !this.memberOf.has(w.id) && w.plan.budgetBytes >= need);
    free.sort((a, b) => a.plan.budgetBytes - b.plan.budgetBytes);
    return free[0] ?? null;
  }

  // ------------------------------------------------------------------ leasing shares

  assign(live: WorkerView[], now: number): void {
    if (live.length === 0) return;
    if (this.cfg.pipeline === 'off') {
      for (const w of live) this.host.wait(w, 'plan', `pipeline training is off (--pipeline off): ${w.plan.reason}`);
      return;
    }
    if (this.rebalancing && [...this.pipelines.values()].every((p) => !p.share)) {
      this.rebalancing = false;
      for (const p of [...this.pipelines.values()]) this.dissolve(p, 're-forming: the proposed pipelines are clearly faster');
    }
    this.form(live);
    this.rebalanceCheck(live);
    if (this.rebalancing) return;
    const work = this.trainer.startStep();
    if (!work) return;
    for (const p of this.pipelines.values()) {
      if (p.share) continue;
      const members = p.stages.map((s) => this.workers.byId.get(s.workerId));
      if (members.some((w) => !w?.socket)) continue;
      if (work.pendingPositions === 0) {
        for (const w of members) this.host.wait(w!, 'no-task', `all of step ${work.step}'s samples are leased; waiting for the next step`);
        continue;
      }
      this.startShare(p, members as WorkerView[], work, now);
    }
  }

  /** Samples for `p` in this step: its throughput share among replicas and pipelines. */
  private shareSize(p: Pipeline, stepSize: number): number {
    const rates: number[] = [];
    for (const w of this.workers.replicas()) rates.push(w.samplesPerSec);
    for (const q of this.pipelines.values()) rates.push(q.samplesPerSec);
    const known = rates.filter((r) => r > 0).sort((a, b) => a - b);
    const fallback = known.length ? known[Math.floor(known.length / 2)] : 1;
    const total = rates.reduce((a, r) => a + (r > 0 ? r : fallback), 0);
    const mine = p.samplesPerSec > 0 ? p.samplesPerSec : fallback;
    return Math.max(1, Math.round((stepSize * mine) / total));
  }

  private startShare(p: Pipeline, members: WorkerView[], work: NonNullable<Trainer['current']>, now: number): void {
    const size = this.shareSize(p, work.size);
    const need = p.samplesPerSec > 0 ? Math.ceil((3000 * size) / p.samplesPerSec) : 0;
    const leaseMs = Math.min(10 * this.cfg.leaseMs, Math.max(this.cfg.leaseMs, need));
    const shapeKey = (s: Stage) => `${s.table.spec.from}-${s.table.spec.to}|${p.microBatch}x${this.seqLen}`;
    const compiling = new Map<number, string>();
    p.stages.forEach((s, i) => {
      const c = this.compiled.get(members[i].id);
      if (!c || c.conn !== this.port.connection(members[i]) || c.key !== shapeKey(s)) compiling.set(i, shapeKey(s));
    });
    const lease = work.lease(p.id, size, now, compiling.size > 0 ? 10 * this.cfg.leaseMs : leaseMs);
    if (!lease) return;
    const { batch } = this.trainer.batchOf(lease);
    const share = new ShareRun(lease, p.stages.map((s) => s.table), batch, p.microBatch, p.inFlight, now);
    p.share = share;
    p.compiling = compiling.size > 0 ? { stages: compiling, leaseMs } : null;
    const slices = new Map<string, Float32Array>();
    p.stages.forEach((s, i) => {
      const w = members[i];
      const key = `${this.trainer.version}:${s.table.spec.from}-${s.table.spec.to}`;
      const conn = this.port.connection(w);
      const h = this.held.get(w.id);
      const fresh = !h || h.conn !== conn || h.key !== key;
      let params: Float32Array | undefined;
      if (fresh) {
        const sk = `${s.table.spec.from}-${s.table.spec.to}`;
        params = slices.get(sk) ?? gatherStage(s.table, this.trainer.params);
        slices.set(sk, params);
        this.held.set(w.id, { conn, key });
      }
      const msg: StageTaskMsg = {
        taskId: lease.id, pipelineId: p.id, step: lease.step, version: lease.version,
        layers: [s.table.spec.from, s.table.spec.to], index: i, stages: p.stages.length, micros: share.micros.length,
        dtype: this.cfg.activations, leaseMs: lease.expiresAt - now, microBatch: p.microBatch, seqLen: this.seqLen, ...(params ? { params } : {}),
        ...(batch.dpo ? { dpo: true as const } : {}),
      };
      this.port.send(w, 'stage', msg);
      this.workers.markComputing(w, lease.id, lease.ids.length, now);
      this.workers.publish(w);
    });
    this.send(p, share.admit());
  }

  private send(p: Pipeline, out: Outgoing[]): void {
    for (const o of out) {
      const w = this.workers.byId.get(p.stages[o.stage].workerId);
      if (w) this.port.send(w, 'hop', o.hop);
    }
  }

  // ------------------------------------------------------------------ answers

  onResult(w: WorkerView, raw: unknown, reject: Reject): void {
    this.rejects.set(w.id, reject);
    const refuse = (code: RejectCode, message: string, taskId?: string) => {
      this.trainer.countRejectedResult();
      reject('stageOut', code, message, taskId);
    };
    const h = stageOutHeader(raw);
    if (!h.ok) return refuse(h.code, h.message);
    const p = this.pipelines.get(this.memberOf.get(w.id) ?? '');
    const share = p?.share;
    if (!p || !share || share.id !== h.value.taskId) {
      // An answer for a share that was withdrawn (a stage left, the lease expired): honest
      // workers send these after the fact. Only ids this coordinator never issued are refused.
      if (h.value.taskId.startsWith(this.trainer.nonce + '.')) return;
      return refuse('UNKNOWN_TASK', `stageOut: share ${h.value.taskId} was never issued by this coordinator`, h.value.taskId);
    }
    const s = p.stages.findIndex((x) => x.workerId === w.id);
    const micro = share.micros[h.value.micro];
    if (h.value.kind !== 'grad' && !micro) return this.refuseShare(p, w, 'UNKNOWN_TASK', `stageOut: share ${share.id} has no micro-batch ${h.value.micro}`, refuse);
    const rows = micro ? micro.batch.B * micro.batch.T : 1;
    const v = validateStageOut(raw, { rows, cols: this.model.nEmbd, stageParams: p.stages[s].table.total, first: s === 0, head: s === p.stages.length - 1 });
    if (!v.ok) return this.refuseShare(p, w, v.code, v.message, refuse);
    const m = v.value;
    let r;
    if (m.kind === 'fwd') r = share.onFwd(s, m.micro, m.acts, m.values!, m.ms);
    else if (m.kind === 'bwd') r = share.onBwd(s, m.micro, m.dIn, m.values, m.loss, m.tokens, m.ms);
    else {
      if (m.version !== share.lease.version) return this.refuseShare(p, w, 'STALE_VERSION', `stageOut: gradient at version ${m.version}, the share is at ${share.lease.version}`, refuse);
      const bad = share.onGrad(s, m.grads, m.tokens);
      r = bad ?? [];
    }
    if (!Array.isArray(r)) return this.refuseShare(p, w, r.code, r.message, refuse);
    this.compiledAnswer(p, share, s);
    this.send(p, r);
    if (share.complete) void this.finishShare(p, share);
  }

  /**
   * Stage `s` answered, so it has compiled the share's shape (the worker compiles on the `stage`
   * message, before any hop): remembered for its connection; once every compiling stage has
   * answered, the share's lease counts from now.
   */
  private compiledAnswer(p: Pipeline, share: ShareRun, s: number): void {
    const c = p.compiling;
    const key = c?.stages.get(s);
    if (!c || key === undefined) return;
    c.stages.delete(s);
    const w = this.workers.byId.get(p.stages[s].workerId);
    if (w) this.compiled.set(w.id, { conn: this.port.connection(w), key });
    if (c.stages.size > 0) return;
    p.compiling = null;
    const live = this.trainer.current?.active.get(share.id);
    if (live) live.expiresAt = Date.now() + c.leaseMs;
  }

  /** A stage's answer is refused: the share cannot go on; its samples go back to the pool. */
  private refuseShare(p: Pipeline, w: WorkerView, code: RejectCode, message: string, refuse: (c: RejectCode, m: string, t?: string) => void): void {
    const id = p.share?.id;
    this.abortShare(p, `${w.id}'s answer was refused (${code})`);
    refuse(code, message, id);
    this.host.schedule();
  }

  /** Withdraw `p`'s share: its lease goes back to the step's pool, its workers are free. */
  private abortShare(p: Pipeline, why: string): void {
    const share = p.share;
    if (!share) return;
    p.share = null;
    const released = this.trainer.current?.release(share.id, 'released');
    if (released) this.log.info({ pipeline: p.id, share: share.id, samples: share.lease.ids.length }, `pipeline share withdrawn: ${why}`);
    for (const s of p.stages) {
      const w = this.workers.byId.get(s.workerId);
      if (w?.socket && w.lease === share.id) this.workers.markIdle(w);
    }
  }

  private async finishShare(p: Pipeline, share: ShareRun): Promise<void> {
    // Re-computation as for replicas (coordinator/security): every stage worker on probation, or
    // one with a failed check, has its shares checked; later ones at the adaptive rate. It runs on
    // the verification threads (--verify-threads), off the event loop.
    const rep = this.security.reputation;
    const verifier = this.security.verifier;
    const chance = verifier && this.cfg.verifyRate > 0 ? Math.max(...p.stages.map((s) => rep.verifyProbability(s.workerId))) : 0;
    if (verifier && chance > 0 && this.rng.next() < chance) {
      const hold = this.trainer.current?.hold(share.lease);
      let bad: StageMismatch | null = null;
      let failed: unknown;
      try {
        // The parameters are copied for the thread now, at the share's version (its lease holds the step open).
        if (this.trainer.version !== share.lease.version) throw new AppError('ERR_VERIFY', `the parameters are at version ${this.trainer.version}, the share at ${share.lease.version} (bug)`, 500);
        bad = await verifier.checkShare(this.trainer.params, share.lease.version, shareCheckOf(share));
      } catch (e) {
        failed = e;
      } finally {
        hold?.();
      }
      if (p.share !== share) return; // withdrawn meanwhile
      if (failed !== undefined) {
        // A coordinator fault, not the workers' (as for replicas): --verify-fail closed re-leases the share, open lets it through unverified.
        const open = this.cfg.verifyFail === 'open';
        this.log.error({ err: failed, share: share.id, verifyFail: this.cfg.verifyFail }, `pipeline share's re-computation could not run; ${open ? 'it goes on unverified' : 'its samples are re-leased'}`);
        if (!open) {
          this.abortShare(p, 'its re-computation could not run');
          this.host.schedule();
          return;
        }
      } else if (bad) {
        const culprit = this.workers.byId.get(p.stages[bad.stage].workerId);
        this.abortShare(p, `re-computation disagrees: ${bad.message}`);
        this.trainer.countRejectedResult();
        if (culprit) {
          this.rejects.get(culprit.id)?.('stageOut', 'VERIFY_FAILED', `stageOut: ${bad.message}`, share.id);
          const v = rep.recordVerified(culprit.id, false);
          if (v.ban) queueMicrotask(() => this.port.ban(culprit, v.reason));
        }
        this.host.schedule();
        return;
      } else for (const s of p.stages) rep.recordVerified(s.workerId, true);
    }
    if (p.share !== share) return;
    const c = this.trainer.check(share.id, p.id);
    if ('code' in c) return this.abortShare(p, `its lease is gone (${c.code})`);
    const now = Date.now();
    const a = share.assemble(this.trainer.paramCount);
    const r: ResultMsg = {
      taskId: share.id, step: share.lease.step, version: share.lease.version, loss: a.loss, tokens: a.tokens, grads: a.grads,
      gradNorm: l2Norm(a.grads), nonFinite: 0, timings: { totalMs: now - share.startedAt },
    };
    const ok = this.trainer.accept(c, r, share.tokens, p.id);
    if (!ok.ok) return this.abortShare(p, `the trainer refused it (${ok.code}: ${ok.message})`);
    p.share = null;
    if (this.accepted.step !== share.lease.step) this.accepted = { step: share.lease.step, shares: new Map() };
    this.accepted.shares.set(share.id, { pipeline: p.id, workers: p.stages.map((s) => s.workerId) });
    const sec = Math.max(1e-3, (now - share.startedAt) / 1000);
    const alpha = p.tokensPerSec > 0 ? 0.5 : 1;
    p.tokensPerSec = (1 - alpha) * p.tokensPerSec + alpha * (a.tokens / sec);
    p.samplesPerSec = (1 - alpha) * p.samplesPerSec + alpha * (share.lease.ids.length / sec);
    p.bubble = share.bubble(now);
    const n = share.lease.ids.length;
    p.stages.forEach((s, i) => {
      const w = this.workers.byId.get(s.workerId);
      const busy = share.busyMs[i] / 1000;
      if (busy > 0) {
        const t = s.table.spec;
        const v = wholeModelTokensPerSec(this.model, stageShape(this.model, t.from, t.to), a.tokens / busy);
        const old = this.speed.get(s.workerId);
        this.speed.set(s.workerId, old ? 0.5 * old + 0.5 * v : v);
      }
      if (!w?.socket) return;
      this.workers.measure(w, n, a.tokens, share.startedAt, now);
      this.workers.recordDone(w, n, a.tokens);
      this.workers.markIdle(w);
      this.port.send(w, 'ack', { taskId: share.id, step: share.lease.step });
      this.workers.publish(w);
    });
    this.checkDue = true;
    if (this.trainer.current?.done) this.host.advance();
    else this.host.schedule();
  }

  // ------------------------------------------------------------------ bans

  /** This step's accepted shares (none once the step has moved on). */
  private acceptedNow() {
    return this.accepted.step === this.trainer.current?.step ? this.accepted.shares : new Map<string, { pipeline: string; workers: string[] }>();
  }

  /**
   * The pipelines whose accepted shares of the running step `workerId` computed a stage of: a ban
   * discards every accepted share of those pipelines in the step (the trainer keeps them under the
   * pipeline's id, so a share it had no part in after a refill goes too: redone, never doubled).
   */
  unitsOf(workerId: string): string[] {
    return [...new Set([...this.acceptedNow().values()].filter((a) => a.workers.includes(workerId)).map((a) => a.pipeline))];
  }

  /** The stage workers acknowledged for an accepted share of the running step (told `discard` when it is thrown away). */
  ackedFor(taskId: string): string[] | undefined {
    return this.acceptedNow().get(taskId)?.workers;
  }

  // ------------------------------------------------------------------ churn

  release(workerId: string): number {
    this.rejects.delete(workerId);
    this.held.delete(workerId);
    this.compiled.delete(workerId);
    const p = this.pipelines.get(this.memberOf.get(workerId) ?? '');
    if (!p) return 0;
    const had = p.share ? 1 : 0;
    this.abortShare(p, `${workerId} left`);
    this.memberOf.delete(workerId);
    const idx = p.stages.findIndex((s) => s.workerId === workerId);
    const sub = this.refill(p, idx);
    if (sub) {
      p.stages[idx] = { workerId: sub.id, table: p.stages[idx].table };
      this.join(p, p.stages[idx]);
      this.log.info({ pipeline: p.id, gone: workerId, by: sub.id }, 'empty stage taken by a waiting worker');
      this.bus.logEntry({ level: 'info', kind: 'info', message: `${sub.id} takes blocks [${p.stages[idx].table.spec.from}, ${p.stages[idx].table.spec.to}) of pipeline ${p.id} (${workerId} left)`, workerId: sub.id });
    } else {
      this.dissolve(p, `${workerId} left and no waiting worker can hold its blocks`);
    }
    return had;
  }

  expire(now: number): void {
    for (const p of this.pipelines.values()) {
      const share = p.share;
      if (!share) continue;
      const live = this.trainer.current?.active.get(share.id);
      if (live && (live.expiresAt > now || live.holds)) continue;
      this.log.warn({ pipeline: p.id, share: share.id }, 'pipeline share expired; its samples are re-leased');
      this.bus.logEntry({ level: 'warn', kind: 'info', message: `pipeline ${p.id}'s share ${share.id} expired; its ${share.lease.ids.length} samples are re-leased` });
      if (live) this.trainer.current?.release(share.id, 'expired');
      this.abortShare(p, 'lease expired');
    }
  }
}
