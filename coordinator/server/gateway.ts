// The socket gateway: owns the workers' socket.io connections. Runs every packet past the security
// policy (and carries out its verdict), validates hello / heartbeat / bye (a bad message gets
// `reject` with a code, is counted per worker, and changes nothing), plans and welcomes workers,
// routes results to the scheduler, declares silent workers dead, and is the only module that
// emits to a worker (WorkerPort) or closes a connection (drop, kick, ban).

import type { Namespace, Server, Socket } from 'socket.io';
import type { Logger } from 'pino';
import { isAppError } from '../../shared/errors.ts';
import { planWorker } from '../../shared/memory/plan.ts';
import { planRoundWorker } from '../../shared/memory/round-plan.ts';
import { PROTOCOL_VERSION, type RejectCode, type ServerToClientEvents, type WelcomeMsg } from '../../shared/protocol/messages.ts';
import { validateBye, validateHeartbeat, validateHello } from '../../shared/protocol/validate.ts';
import { plannedMicroBatchCap, type CoordinatorConfig } from '../config.ts';
import type { Security } from '../security/security.ts';
import { tokenMatches } from '../security/token.ts';
import type { Accept, Ban } from '../security/verdict.ts';
import type { Trainer } from '../train/trainer.ts';
import type { Lease } from '../train/step-work.ts';
import type { Reject, WorkerPort } from './assigner.ts';
import type { EventBus } from './events.ts';
import { maxMessageBytes } from './message-size.ts';
import type { Scheduler } from './scheduler.ts';
import { ResultQueue } from './result-queue.ts';

/** Bytes a queued result holds (its gradient: the rest is small). */
function resultBytes(raw: unknown): number {
  const r = raw as { grads?: unknown; acts?: { data?: unknown }; dIn?: { data?: unknown } } | null;
  const g = r?.grads ?? r?.acts?.data ?? r?.dIn?.data;
  return ArrayBuffer.isView(g) ? g.byteLength : 0;
}
import { toWirePlan } from './wire-plan.ts';
import { WireCounter } from './wire-counter.ts';
import { AwakeClock } from './awake-clock.ts';
import type { WorkerRegistry, WorkerView } from './workers.ts';

export class WorkerGateway implements WorkerPort {
  private monitor: NodeJS.Timeout | null = null;
  /** Liveness ignores the coordinator's own stalls (awake-clock.ts); beats with the monitor. */
  private awake!: AwakeClock;
  /** Results are handled within a time budget per event-loop turn (result-queue.ts). */
  private readonly results = new ResultQueue();
  readonly maxMessageBytes: number;
  /** Bytes on the workers' sockets since start (wire-counter.ts; /api/status `wire`). */
  readonly wire = new WireCounter();
  private scheduler!: Scheduler;

  constructor(
    private readonly io: Server | Namespace,
    private readonly trainer: Trainer,
    private readonly cfg: CoordinatorConfig,
    private readonly preset: string,
    private readonly seqLen: number,
    private readonly workers: WorkerRegistry,
    private readonly security: Security,
    private readonly bus: EventBus,
    private readonly log: Logger,
  ) {
    this.maxMessageBytes = maxMessageBytes(trainer.paramCount);
  }

  /** Start serving: connections go to `scheduler` from now on, and the liveness monitor runs. */
  open(scheduler: Scheduler): void {
    this.scheduler = scheduler;
    this.io.on('connection', (s) => this.onConnection(s));
    const every = Math.min(500, this.cfg.heartbeatMs);
    this.awake = new AwakeClock(every);
    this.monitor = setInterval(() => this.tick(), every);
    this.monitor.unref();
  }

  // ------------------------------------------------------------------ WorkerPort

  send<E extends keyof ServerToClientEvents>(w: WorkerView, event: E, payload: Parameters<ServerToClientEvents[E]>[0]): void {
    w.socket?.emit(event, payload);
  }

  connection(w: WorkerView): object | null {
    return w.socket;
  }

  isCurrent(w: WorkerView, conn: object | null): boolean {
    return conn !== null && w.socket === conn && (conn as Socket).connected;
  }

  /** Bytes queued for the worker's websocket that it has not read yet (ws bufferedAmount). */
  backlog(w: WorkerView): number {
    const ws = (w.socket?.conn as unknown as { transport?: { socket?: { bufferedAmount?: number } } } | undefined)?.transport?.socket;
    return typeof ws?.bufferedAmount === 'number' ? ws.bufferedAmount : 0;
  }

  /** Carry out a ban: discard its unverified results of the running step, tell it, disconnect it. */
  ban(w: WorkerView, reason: string): void {
    const socket = w.socket;
    // Its pipelines' shares of the step go too (each was one result under the pipeline's id).
    const discarded = this.trainer.discardWorker(w.id, this.scheduler.unitsOf(w.id));
    // Honest workers whose acknowledged results were thrown with the step's accumulation are told
    // (every stage of a discarded pipeline share).
    const byWorker = new Map<string, Lease[]>();
    for (const l of discarded) {
      for (const id of this.scheduler.ackedFor(l.id, l.workerId)) byWorker.set(id, [...(byWorker.get(id) ?? []), l]);
    }
    for (const [id, ls] of byWorker) {
      const other = this.workers.byId.get(id);
      if (other && id !== w.id) this.send(other, 'discard', { step: ls[0].step, taskIds: ls.map((l) => l.id), reason: `${w.id} was banned; the step's accumulation restarts` });
    }
    if (socket) {
      socket.emit('reject', { event: 'result', code: 'BANNED', message: `banned: ${reason}` });
      socket.emit('notice', { level: 'error', message: `banned: ${reason}`, kind: 'kicked' });
    }
    this.security.recordBan(w.id, reason, discarded.length);
    if (socket) this.dropWorker(w, 'kicked', `banned: ${reason}`);
    else this.scheduler.schedule();
  }

  // ------------------------------------------------------------------ connection lifecycle

  private onConnection(socket: Socket): void {
    let worker: WorkerView | null = null;
    const helloTimer = setTimeout(() => {
      if (!worker) socket.disconnect(true);
    }, this.cfg.deadAfterMs);
    helloTimer.unref();
    /** The welcomed worker of THIS connection (a resumed id may have moved to a newer one). */
    const mine = () => (worker && worker.socket === socket ? worker : null);

    this.wire.attach(socket);
    const guard = this.security.guardConnection();
    socket.use((packet, next) => {
      const event = typeof packet[0] === 'string' ? packet[0].slice(0, 32) : '?';
      const v = this.security.judgePacket(guard, event, packet[1], mine());
      switch (v.kind) {
        case 'accept': return next();
        case 'drop': return; // dropped: not calling next()
        case 'disconnect': return void socket.disconnect(true);
        case 'refuse': return this.refusePacket(socket, mine(), event, v.code, v.message);
        case 'later': return void v.until.then((go) => {
          if (go && socket.connected) next();
        });
      }
    });

    const reject: Reject = (event, code, message, taskId) => {
      socket.emit('reject', { event, code, message, ...(taskId ? { taskId } : {}) });
      if (worker) {
        this.workers.countReject(worker, code);
        this.bus.emit('reject', { workerId: worker.id, code });
        this.bus.logEntry({ level: 'warn', kind: 'reject', message: `${event} rejected: ${message}`, workerId: worker.id, code });
        this.workers.publish(worker);
        this.carryOut(worker, this.security.judgeRejection(worker.id, code));
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
        plan = (this.cfg.mode === 'diloco' ? planRoundWorker : planWorker)(this.trainer.model, {
          userCapBytes: h.value.userCapBytes || undefined,
          probedBytes: h.value.probedBytes || undefined,
          maxBufferSize: h.value.limits.maxBufferSize,
          maxStorageBufferBindingSize: h.value.limits.maxStorageBufferBindingSize,
        }, { seqLen: this.seqLen, maxMicroBatch: plannedMicroBatchCap(this.cfg) });
      } catch (e) {
        return reject('hello', 'OUT_OF_RANGE', isAppError(e) ? e.message : String(e));
      }
      if (this.security.isBanned(h.value.resumeId)) {
        reject('hello', 'BANNED', `worker ${h.value.resumeId} is banned`);
        return void socket.disconnect(true);
      }
      if ((plan.role === 'replica' || plan.role === 'round') && plan.seqLen < this.seqLen) {
        // The planner halved the sequence length to fit; our rows are fixed-length, so such a
        // worker cannot take tasks. It waits, and the plan says why.
        plan = { ...plan, role: 'too-small' as const, microBatch: 0,
          reason: `one training row of ${this.seqLen} tokens does not fit this worker's activation budget (it could take ${plan.seqLen}); ${plan.reason}` };
      }
      clearTimeout(helloTimer);
      const prev = h.value.resumeId ? this.workers.byId.get(h.value.resumeId) : undefined;
      if (prev && prev.socket) {
        // The old connection of this id is still open: it is stale now.
        this.dropWorker(prev, 'left', 'replaced by a new connection');
      }
      const id = prev ? prev.id : this.workers.freshId((x) => this.security.isBanned(x));
      const now = Date.now();
      const w = (worker = this.workers.connect(prev, id, socket, h.value, plan, now, this.awake.now(now)));
      this.security.noteIdentity(id, socket.handshake.address ?? '', !prev);
      const welcome: WelcomeMsg = {
        protocol: PROTOCOL_VERSION,
        workerId: w.id,
        preset: this.preset,
        model: this.trainer.model,
        paramCount: this.trainer.paramCount,
        plan: toWirePlan(plan),
        heartbeatMs: this.cfg.heartbeatMs,
        deadAfterMs: this.cfg.deadAfterMs,
        maxMessageBytes: this.maxMessageBytes,
      };
      socket.emit('welcome', welcome);
      this.log.info({ worker: w.id, backend: h.value.backend, role: plan.role, microBatch: plan.microBatch }, 'worker joined');
      this.bus.logEntry({ level: 'info', kind: 'join', message: `${w.id} joined (${h.value.backend}, ${plan.role}, micro-batch ${plan.microBatch})`, workerId: w.id });
      this.workers.publish(w, 'join');
      // Stage workers get their work (or their wait) from the stage assigner, unless --pipeline off.
      const served = plan.role === 'replica' || plan.role === 'round' || (plan.role === 'stage' && this.cfg.mode === 'sync' && this.cfg.pipeline !== 'off');
      if (!served) this.scheduler.wait(w, 'plan', plan.reason);
      this.scheduler.schedule();
    });

    socket.on('result', (raw: unknown) => {
      this.results.run(socket, () => {
        const w = mine();
        if (!w) return reject('result', 'NOT_WELCOMED', 'send hello first');
        this.heard(w);
        this.scheduler.onResult(w, raw, reject);
      }, resultBytes(raw));
    });

    // Pipeline stages: activations, their gradients, a share's gradient (stage-assigner.ts), in
    // arrival order with the results.
    socket.on('stageOut', (raw: unknown) => {
      this.results.run(socket, () => {
        const w = mine();
        if (!w) return reject('stageOut', 'NOT_WELCOMED', 'send hello first');
        this.heard(w);
        this.scheduler.onResult(w, raw, reject);
      }, resultBytes(raw));
    });

    // --mode diloco: a round worker's packed delta goes to the assigner of its role (round-assigner.ts).
    socket.on('delta', (raw: unknown) => {
      const w = mine();
      if (!w) return reject('delta', 'NOT_WELCOMED', 'send hello first');
      this.heard(w);
      this.scheduler.onResult(w, raw, reject);
    });

    socket.on('heartbeat', (raw: unknown) => {
      const w = mine();
      if (!w) return reject('heartbeat', 'NOT_WELCOMED', 'send hello first');
      const hb = validateHeartbeat(raw);
      if (!hb.ok) return reject('heartbeat', hb.code, hb.message);
      this.heard(w);
      socket.emit('heartbeat', { t: hb.value.t, serverTime: Date.now() });
    });

    socket.on('bye', (raw: unknown) => {
      this.results.flush(socket); // its results sent before the bye count first, as they arrived
      const b = validateBye(raw);
      const w = mine();
      if (w) this.dropWorker(w, 'left', b.ok && b.value.reason ? `bye: ${b.value.reason}` : 'bye');
      socket.disconnect(true);
    });

    socket.on('disconnect', (reason) => {
      this.results.flush(socket);
      clearTimeout(helloTimer);
      const w = mine();
      if (w) this.dropWorker(w, 'left', `disconnected (${reason})`);
    });
  }

  /** A packet refused by security: `reject` to the sender, counted against its worker (if welcomed). */
  private refusePacket(socket: Socket, w: WorkerView | null, event: string, code: RejectCode, message: string): void {
    socket.emit('reject', { event, code, message });
    if (!w) return;
    this.workers.countReject(w, code);
    this.bus.emit('reject', { workerId: w.id, code });
    this.workers.publish(w);
    this.carryOut(w, this.security.judgeRejection(w.id, code));
  }

  /** A rejection's verdict. Deferred: we are inside this worker's own handler. */
  private carryOut(w: WorkerView, v: Accept | Ban): void {
    if (v.kind === 'ban') queueMicrotask(() => this.ban(w, v.reason));
  }

  /** Detach a worker: its live leases go back to the pool at once and are re-leased. */
  dropWorker(w: WorkerView, state: 'left' | 'dead' | 'kicked', why: string): void {
    const socket = w.socket;
    this.workers.detach(w, state);
    const released = this.scheduler.release(w.id);
    if (socket && socket.connected) socket.disconnect(true);
    this.log.info({ worker: w.id, state, released }, `worker ${state}: ${why}`);
    this.bus.logEntry({ level: state === 'left' ? 'info' : 'warn', kind: state === 'left' ? 'leave' : state === 'dead' ? 'dead' : 'kick', message: `${w.id} ${state}: ${why}${released ? `; ${released} lease(s) re-queued` : ''}`, workerId: w.id });
    this.workers.publish(w, 'leave');
    this.scheduler.schedule();
  }

  /** Operator kick of a connected worker; false when there is none with that id. */
  kick(id: string): boolean {
    const w = this.workers.byId.get(id);
    if (!w || !w.socket) return false;
    w.socket.emit('notice', { level: 'warn', message: 'kicked by the operator', kind: 'kicked' });
    this.dropWorker(w, 'kicked', 'kicked by admin');
    return true;
  }

  // ------------------------------------------------------------------ liveness

  /** A message arrived from `w`. */
  private heard(w: WorkerView): void {
    const now = Date.now();
    this.workers.touch(w, now, this.awake.now(now));
  }

  private tick(): void {
    const now = Date.now();
    this.awake.beat(now);
    const awakeNow = this.awake.now(now);
    for (const w of this.workers.connected()) {
      if (awakeNow - w.heardAt > this.cfg.deadAfterMs) {
        w.socket?.emit('notice', { level: 'warn', message: `no message for ${this.cfg.deadAfterMs} ms: declared dead`, kind: 'info' });
        const wall = now - w.lastSeen;
        const slept = wall - (awakeNow - w.heardAt);
        this.dropWorker(w, 'dead', `silent for ${wall} ms${slept > 0 ? ` (${slept} ms of it while this coordinator's loop was stalled, not counted)` : ''}`);
      }
    }
    this.scheduler.expire(now);
    this.workers.prune(now);
    this.scheduler.schedule();
  }

  /** Tell every worker the coordinator stops, and stop the monitor. */
  shutdown(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.monitor = null;
    for (const w of this.workers.connected()) w.socket?.emit('notice', { level: 'warn', message: 'coordinator shutting down', kind: 'shutdown' });
  }
}
