// The worker hub: socket.io events <-> trainer. Validates every incoming message (a bad one gets
// `reject` with a code, is counted per worker, and changes nothing), leases tasks to live replica
// workers in proportion to their measured throughput, re-leases expired/abandoned leases in the
// same step, declares silent workers dead, and advances the step when all results are in.

import type { Server, Socket } from 'socket.io';
import type { Logger } from 'pino';
import { isAppError } from '../../shared/errors.ts';
import { planWorker } from '../../shared/memory/plan.ts';
import {
  PROTOCOL_VERSION,
  type ParamsMsg,
  type RejectCode,
  type TaskMsg,
  type WaitMsg,
  type WelcomeMsg,
  type WirePlan,
} from '../../shared/protocol/messages.ts';
import { encodeOnce } from '../../shared/protocol/parser.ts';
import { validateBye, validateHeartbeat, validateHello, validateResult } from '../../shared/protocol/validate.ts';
import type { CoordinatorConfig } from '../config.ts';
import type { Trainer } from '../train/trainer.ts';
import { tokenMatches } from '../http/auth.ts';
import type { Security } from '../security/security.ts';
import type { Lease } from '../train/step-work.ts';
import type { EventBus } from './events.ts';
import { WorkerRegistry, type WorkerRecord } from './workers.ts';

export interface HubHooks {
  /** Called after each optimizer step (eval, checkpoint); training resumes when it resolves. */
  afterStep(step: number): Promise<void>;
}

interface LeaseInfo {
  lease: Lease;
  tokens: number;
}

export class WorkerHub {
  readonly workers = new WorkerRegistry();
  paused = false;
  /** True while afterStep hooks run between steps. */
  private advancing = false;
  private monitor: NodeJS.Timeout | null = null;
  private leaseTokens = new Map<string, LeaseInfo>();
  private quorumReached = false;
  readonly maxMessageBytes: number;
  /** Hardening hooks (coordinator/security), set by attachSecurity(). */
  security: Security | null = null;
  /** The current version's `params` message: one object per version, packed once by the parser. */
  private paramsMsg: ParamsMsg | null = null;

  constructor(
    private readonly io: Server,
    private readonly trainer: Trainer,
    private readonly cfg: CoordinatorConfig,
    private readonly preset: string,
    private readonly seqLen: number,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly hooks: HubHooks,
  ) {
    this.maxMessageBytes = trainer.paramCount * 4 + (1 << 20);
    io.on('connection', (s) => this.onConnection(s));
    this.monitor = setInterval(() => this.tick(), Math.min(500, cfg.heartbeatMs));
    this.monitor.unref();
  }

  // ------------------------------------------------------------------ connection lifecycle

  private onConnection(socket: Socket): void {
    let worker: WorkerRecord | null = null;
    const helloTimer = setTimeout(() => {
      if (!worker) socket.disconnect(true);
    }, this.cfg.deadAfterMs);
    helloTimer.unref();

    const reject = (event: string, code: RejectCode, message: string, taskId?: string) => {
      socket.emit('reject', { event, code, message, ...(taskId ? { taskId } : {}) });
      if (worker) {
        this.workers.countReject(worker, code);
        this.bus.emit('reject', { workerId: worker.id, code });
        this.bus.logEntry({ level: 'warn', kind: 'reject', message: `${event} rejected: ${message}`, workerId: worker.id, code });
        this.changed(worker);
        this.security?.onRejected(worker, code, taskId);
      }
      this.log.warn({ worker: worker?.id, event, code }, message);
    };

    socket.on('hello', (raw: unknown) => {
      if (worker) return reject('hello', 'BAD_SCHEMA', 'hello sent twice on one connection');
      const h = validateHello(raw);
      if (!h.ok) return reject('hello', h.code, h.message);
      // Constant-time: a join token is a secret like the admin token.
      if (this.cfg.joinToken !== undefined && !tokenMatches(h.value.joinToken ?? '', this.cfg.joinToken)) {
        reject('hello', 'UNAUTHORIZED', 'this coordinator needs a join token (worker --join-token)');
        return void socket.disconnect(true);
      }
      let plan;
      try {
        plan = planWorker(this.trainer.model, {
          userCapBytes: h.value.userCapBytes || undefined,
          probedBytes: h.value.probedBytes || undefined,
          maxBufferSize: h.value.limits.maxBufferSize,
          maxStorageBufferBindingSize: h.value.limits.maxStorageBufferBindingSize,
        }, { seqLen: this.seqLen, maxMicroBatch: this.cfg.maxMicroBatch });
      } catch (e) {
        return reject('hello', 'OUT_OF_RANGE', isAppError(e) ? e.message : String(e));
      }
      if (this.security?.isBanned(h.value.resumeId)) {
        reject('hello', 'BANNED', `worker ${h.value.resumeId} is banned`);
        return void socket.disconnect(true);
      }
      if (plan.role === 'replica' && plan.seqLen < this.seqLen) {
        // The planner halved the sequence length to fit; our rows are fixed-length, so such a
        // worker cannot take tasks. It waits, and the plan says why.
        plan = { ...plan, role: 'too-small' as const, microBatch: 0,
          reason: `one training row of ${this.seqLen} tokens does not fit this worker's activation budget (it could take ${plan.seqLen}); ${plan.reason}` };
      }
      clearTimeout(helloTimer);
      const now = Date.now();
      const prev = h.value.resumeId ? this.workers.byId.get(h.value.resumeId) : undefined;
      if (prev && prev.socket) {
        // The old connection of this id is still open: it is stale now.
        this.dropWorker(prev, 'left', 'replaced by a new connection');
      }
      worker = prev ?? {
        id: this.freshId(),
        socket: null,
        hello: h.value,
        plan,
        state: 'idle',
        joinedAt: now,
        lastSeen: now,
        paramsVersion: -1,
        lease: null,
        leaseIssuedAt: 0,
        leaseSize: 0,
        tasksDone: 0,
        samplesDone: 0,
        tokensDone: 0,
        rejected: 0,
        rejectedByCode: {},
        samplesPerSec: 0,
        tokensPerSec: 0,
        waitCode: null,
      };
      Object.assign(worker, { socket, hello: h.value, plan, state: 'idle', lastSeen: now, paramsVersion: -1, lease: null, waitCode: null });
      this.workers.byId.set(worker.id, worker);
      const welcome: WelcomeMsg = {
        protocol: PROTOCOL_VERSION,
        workerId: worker.id,
        preset: this.preset,
        model: this.trainer.model,
        paramCount: this.trainer.paramCount,
        plan: toWirePlan(plan),
        heartbeatMs: this.cfg.heartbeatMs,
        deadAfterMs: this.cfg.deadAfterMs,
        maxMessageBytes: this.maxMessageBytes,
      };
      socket.emit('welcome', welcome);
      this.log.info({ worker: worker.id, backend: h.value.backend, role: plan.role, microBatch: plan.microBatch }, 'worker joined');
      this.bus.logEntry({ level: 'info', kind: 'join', message: `${worker.id} joined (${h.value.backend}, ${plan.role}, micro-batch ${plan.microBatch})`, workerId: worker.id });
      this.bus.emit('worker', { op: 'join', worker: this.workers.row(worker) });
      if (plan.role !== 'replica') this.sendWait(worker, 'plan', plan.reason);
      this.schedule();
    });

    socket.on('result', (raw: unknown) => {
      if (!worker || worker.socket !== socket) return reject('result', 'NOT_WELCOMED', 'send hello first');
      worker.lastSeen = Date.now();
      this.onResult(worker, raw, reject);
    });

    socket.on('heartbeat', (raw: unknown) => {
      if (!worker || worker.socket !== socket) return reject('heartbeat', 'NOT_WELCOMED', 'send hello first');
      const hb = validateHeartbeat(raw);
      if (!hb.ok) return reject('heartbeat', hb.code, hb.message);
      worker.lastSeen = Date.now();
      socket.emit('heartbeat', { t: hb.value.t, serverTime: Date.now() });
    });

    socket.on('bye', (raw: unknown) => {
      const b = validateBye(raw);
      if (worker && worker.socket === socket) this.dropWorker(worker, 'left', b.ok && b.value.reason ? `bye: ${b.value.reason}` : 'bye');
      socket.disconnect(true);
    });

    socket.on('disconnect', (reason) => {
      clearTimeout(helloTimer);
      if (worker && worker.socket === socket) this.dropWorker(worker, 'left', `disconnected (${reason})`);
    });
  }

  /**
   * A new worker id. The id counter restarts with the coordinator while bans are loaded from the
   * run directory, so an honest newcomer must not be handed an id that a previous run banned.
   */
  private freshId(): string {
    let id = this.workers.newId();
    while (this.security?.isBanned(id) || this.workers.byId.has(id)) id = this.workers.newId();
    return id;
  }

  /** Detach a worker: its live lease goes back to the pool at once and is re-leased. */
  dropWorker(w: WorkerRecord, state: 'left' | 'dead' | 'kicked', why: string): void {
    const socket = w.socket;
    w.socket = null;
    w.state = state;
    w.lease = null;
    const released = this.trainer.current?.releaseWorker(w.id, 'released') ?? [];
    for (const l of released) this.leaseTokens.delete(l.id);
    if (socket && socket.connected) socket.disconnect(true);
    this.log.info({ worker: w.id, state, released: released.length }, `worker ${state}: ${why}`);
    this.bus.logEntry({ level: state === 'left' ? 'info' : 'warn', kind: state === 'left' ? 'leave' : state === 'dead' ? 'dead' : 'kick', message: `${w.id} ${state}: ${why}${released.length ? `; ${released.length} lease(s) re-queued` : ''}`, workerId: w.id });
    this.bus.emit('worker', { op: 'leave', worker: this.workers.row(w) });
    this.schedule();
  }

  kick(id: string): boolean {
    const w = this.workers.byId.get(id);
    if (!w || !w.socket) return false;
    w.socket.emit('notice', { level: 'warn', message: 'kicked by the operator', kind: 'kicked' });
    this.dropWorker(w, 'kicked', 'kicked by admin');
    return true;
  }

  // ------------------------------------------------------------------ results

  private onResult(w: WorkerRecord, raw: unknown, reject: (event: string, code: RejectCode, message: string, taskId?: string) => void): void {
    const taskId = typeof (raw as { taskId?: unknown })?.taskId === 'string' ? ((raw as { taskId: string }).taskId).slice(0, 64) : undefined;
    const refuse = (code: RejectCode, message: string) => {
      this.trainer.rejectedResults++;
      reject('result', code, message, taskId);
      // A worker whose lease expired stays out of scheduling until it answers (it is slow);
      // its answer, even refused, makes it available again.
      if (w.lease !== null && w.lease === taskId && !this.trainer.current?.active.has(taskId)) {
        // Its late answer still measures its speed: the next lease is sized and timed for it.
        if (code === 'LATE') this.measure(w, w.leaseSize, -1, w.leaseIssuedAt, Date.now());
        w.lease = null;
        w.state = 'idle';
        this.schedule();
      }
    };
    const v = validateResult(raw, { paramCount: this.trainer.paramCount });
    if (!v.ok) return refuse(v.code, v.message);
    const r = v.value;
    const c = this.trainer.check(r.taskId, w.id);
    if ('code' in c) return refuse(c.code, c.message);
    const info = this.leaseTokens.get(c.id);
    if (!info) return refuse('LATE', `task ${c.id} is no longer tracked`);
    const g = this.security?.gate(w, c, r, info.tokens);
    if (g && g.ok === 'later') {
      // Being re-computed on a verification thread (the lease is held meanwhile): handle the
      // result again, every check included, once the verdict is in, if this connection still is.
      const socket = w.socket;
      void g.until.then((go) => {
        if (go && socket && w.socket === socket && socket.connected) this.onResult(w, raw, reject);
      });
      return;
    }
    if (g && !g.ok) return refuse(g.code, g.message);
    const a = this.trainer.accept(c, r, info.tokens, w.id);
    if (!a.ok) return refuse(a.code, a.message);
    this.security?.accepted(w, c);
    // Accepted.
    this.leaseTokens.delete(c.id);
    const now = Date.now();
    const n = c.ids.length;
    this.measure(w, n, r.tokens, c.issuedAt, now);
    w.tasksDone++;
    w.samplesDone += n;
    w.tokensDone += r.tokens;
    w.lease = null;
    w.state = 'idle';
    w.socket?.emit('ack', { taskId: c.id, step: c.step });
    this.changed(w);
    if (this.trainer.current?.done) void this.advance();
    else this.schedule();
  }

  // ------------------------------------------------------------------ stepping

  private async advance(): Promise<void> {
    if (this.advancing) return;
    this.advancing = true;
    try {
      const point = this.trainer.finishStep(Date.now(), this.workers.replicas().length);
      this.log.info({ step: point.step, loss: point.loss, lr: point.lr, gradNorm: point.gradNorm, tokensPerSec: Math.round(point.tokensPerSec) }, 'step');
      this.bus.emit('step', point);
      await this.hooks.afterStep(point.step);
    } catch (e) {
      this.log.error({ err: e }, 'step failed');
      this.bus.logEntry({ level: 'error', kind: 'step', message: `step failed: ${(e as Error).message}` });
    } finally {
      this.advancing = false;
    }
    this.schedule();
  }

  private sendWait(w: WorkerRecord, code: WaitMsg['code'], reason: string): void {
    if (!w.socket || w.waitCode === code) return;
    w.waitCode = code;
    w.state = code === 'paused' ? 'paused' : 'waiting';
    w.socket.emit('wait', { code, reason });
    this.changed(w);
  }

  /**
   * Lease duration for `size` samples on `w`: --lease-ms, or 3x the time its measured throughput
   * needs when that is longer (capped at 10x --lease-ms), so a slow-but-alive worker on a big
   * model is not re-leased forever; dead workers are caught by heartbeats, not by this timeout.
   */
  private leaseMsFor(w: WorkerRecord, size: number): number {
    if (!(w.samplesPerSec > 0)) return this.cfg.leaseMs;
    const need = Math.ceil((3000 * size) / w.samplesPerSec);
    return Math.min(10 * this.cfg.leaseMs, Math.max(this.cfg.leaseMs, need));
  }

  private measure(w: WorkerRecord, samples: number, tokens: number, sinceMs: number, now: number): void {
    const sec = Math.max(1e-3, (now - sinceMs) / 1000);
    const alpha = w.samplesPerSec > 0 ? 0.5 : 1;
    w.samplesPerSec = (1 - alpha) * w.samplesPerSec + alpha * (samples / sec);
    if (tokens >= 0) w.tokensPerSec = (1 - alpha) * w.tokensPerSec + alpha * (tokens / sec); // -1: unknown (late answer)
  }

  /** Samples to lease to `w` now: its throughput share of the step, within its plan. */
  private chunkFor(w: WorkerRecord, live: WorkerRecord[], stepSize: number): number {
    const known = live.map((x) => x.samplesPerSec).filter((x) => x > 0).sort((a, b) => a - b);
    const fallback = known.length ? known[Math.floor(known.length / 2)] : 1;
    const rate = (x: WorkerRecord) => (x.samplesPerSec > 0 ? x.samplesPerSec : fallback);
    const total = live.reduce((a, x) => a + rate(x), 0);
    const share = Math.ceil((stepSize * rate(w)) / total);
    return Math.max(1, Math.min(share, w.plan.microBatch, this.cfg.maxMicroBatch));
  }

  /** Hand work to every idle live replica (and params first when they are stale). */
  schedule(): void {
    if (this.advancing) return;
    const live = this.workers.replicas();
    if (this.paused) {
      for (const w of live) if (!w.lease) this.sendWait(w, 'paused', 'training is paused by the operator');
      return;
    }
    if (this.trainer.finished) {
      for (const w of live) this.sendWait(w, 'finished', `max steps (${this.cfg.maxSteps}) reached`);
      return;
    }
    if (live.length === 0) return;
    // --min-workers gates only the start of training (so splits are real from step 0); once
    // running, the run goes on with whoever is left.
    if (!this.quorumReached && live.length < this.cfg.minWorkers) {
      for (const w of live) this.sendWait(w, 'no-task', `waiting for ${this.cfg.minWorkers} workers (${live.length} connected)`);
      return;
    }
    this.quorumReached = true;
    const work = this.trainer.startStep();
    if (!work) return;
    const now = Date.now();
    for (const w of live) {
      if (w.lease || !w.socket) continue;
      const size = this.chunkFor(w, live, work.size);
      const leaseMs = this.leaseMsFor(w, size);
      const lease = work.lease(w.id, size, now, leaseMs);
      if (!lease) {
        this.sendWait(w, 'no-task', `all of step ${work.step}'s samples are leased; waiting for the next step`);
        continue;
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
        };
      } catch (e) {
        work.release(lease.id, 'released');
        this.log.error({ err: e }, 'could not build a task');
        return;
      }
      if (w.paramsVersion !== this.trainer.version) {
        w.socket.emit('params', this.paramsMessage());
        w.paramsVersion = this.trainer.version;
      }
      this.leaseTokens.set(lease.id, { lease, tokens });
      w.lease = lease.id;
      w.leaseIssuedAt = now;
      w.leaseSize = lease.ids.length;
      w.state = 'computing';
      w.waitCode = null;
      w.socket.emit('task', task);
      this.changed(w);
    }
  }

  // ------------------------------------------------------------------ liveness

  private tick(): void {
    const now = Date.now();
    for (const w of this.workers.connected()) {
      if (now - w.lastSeen > this.cfg.deadAfterMs) {
        w.socket?.emit('notice', { level: 'warn', message: `no message for ${this.cfg.deadAfterMs} ms: declared dead`, kind: 'info' });
        this.dropWorker(w, 'dead', `silent for ${now - w.lastSeen} ms`);
      }
    }
    const expired = this.trainer.current?.expire(now) ?? [];
    for (const l of expired) {
      this.leaseTokens.delete(l.id);
      // The worker keeps its (now dead) lease id: it gets no new task until it answers or dies,
      // so the samples go to another worker.
      this.log.warn({ task: l.id, worker: l.workerId }, 'lease expired; re-leasing');
      this.bus.logEntry({ level: 'warn', kind: 'info', message: `lease ${l.id} of ${l.workerId} expired; its ${l.ids.length} samples are re-leased`, workerId: l.workerId });
    }
    this.workers.prune(now);
    this.schedule();
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

  private changed(w: WorkerRecord): void {
    this.bus.emit('worker', { op: 'update', worker: this.workers.row(w) });
  }

  /** Tell every worker the coordinator stops, and stop the monitor. */
  shutdown(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.monitor = null;
    for (const w of this.workers.connected()) w.socket?.emit('notice', { level: 'warn', message: 'coordinator shutting down', kind: 'shutdown' });
  }
}

export function toWirePlan(p: import('../../shared/memory/plan.ts').WorkerPlan): WirePlan {
  return {
    role: p.role,
    budgetBytes: p.budgetBytes,
    trainableParams: p.trainableParams,
    microBatch: p.microBatch,
    seqLen: p.seqLen,
    ...(p.layerRange ? { layerRange: p.layerRange } : {}),
    reason: p.reason,
    breakdown: { ...p.breakdown },
  };
}
