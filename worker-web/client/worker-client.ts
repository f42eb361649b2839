// The worker's connection protocol, shared by the Node worker and the browser tab's Web Worker:
// connect, hello, welcome (keep the id, the plan), params, tasks -> the role's task handler,
// ack/reject, heartbeats, reconnect with backoff + jitter, leave and rejoin around engine warm-up
// and device loss, clean stop with `bye`. The other jobs live beside it: the engine session
// (engine-session.ts: build, warm-up, loss, rebuild), the compute step (compute-step.ts), one task
// handler per role (task-handler.ts, roles.ts), faults as wrappers (fault-wrappers.ts) and the
// statistics (stats.ts).
//
// Ordering: engine work runs on one chain in message order (work-chain.ts). Each socket
// connection has an epoch; work queued under an older epoch is dropped (its lease is re-leased by
// the coordinator), and nothing is ever emitted on a socket that is not connected (socket.io
// would buffer it and send it before the next hello).
// Why this file is long: it is one state machine (connection epochs, welcome and warm-up,
// reconnect, device loss, refusals); its handlers share that private state, and the jobs that do
// not need it already live in the modules above (the audit trace in trace.ts, faults in fault-wrappers.ts).

import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import {
  DEFAULT_HEARTBEAT_MS,
  MAX_INCOMING_FRAME_BYTES,
  type AckMsg,
  type ClientToServerEvents,
  type NoticeMsg,
  type RejectMsg,
  type ServerToClientEvents,
  type WaitMsg,
  type WelcomeMsg,
} from '../../shared/protocol/messages.ts';
import { validateParams, validateWelcome } from '../../shared/protocol/validate.ts';
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts';
import { now, sleep } from './clock.ts';
import { EngineSession } from './engine-session.ts';
import { helloMessage } from './hello.ts';
import type { EngineHost } from './engine-host.ts';
import { faultWrappers, type FaultWrappers, type ParamsSink } from './fault-wrappers.ts';
import type { FaultSpec } from './faults.ts';
import { roleHandlers } from './roles.ts';
import { socketChannel, type Channel } from './sender.ts';
import { StatsBook, type LogLevel, type WorkerStats } from './stats.ts';
import type { TaskContext, TaskHandler } from './task-handler.ts';
import { WorkChain } from './work-chain.ts';
import { attachTrace, type TraceEvent } from './trace.ts';

export type { LogLevel, WorkerStats } from './stats.ts';

export interface WorkerClientOptions {
  url: string;
  /**
   * Several coordinator processes of one run (--redis): tried in turn, the next one after a
   * failed connection or a lost one (`url` is the first when absent).
   */
  urls?: string[];
  host: EngineHost;
  name?: string;
  userCapBytes?: number;
  fault?: FaultSpec;
  seed?: number;
  agent?: string;
  joinToken?: string;
  backoff?: BackoffOptions;
  /** Socket.io path, if the coordinator serves it elsewhere than /socket.io. */
  path?: string;
  log?: (level: LogLevel, msg: string) => void;
  onStats?: (s: WorkerStats) => void;
  /** Called with each new socket before it connects (link emulation: link.ts paceSocket). */
  wrapSocket?: (socket: unknown) => void;
  /** Audit hook: welcome, task rows, acks and discards as they arrive (trace.ts). */
  trace?: (e: TraceEvent) => void;
}

type WorkerSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** The socket.io client options of a worker's connection (one per connect()). */
export function workerSocketOptions(path: string | undefined): Partial<ManagerOptions & SocketOptions> {
  return {
    parser: msgpackParser,
    transports: ['websocket'],
    reconnection: false, // ours: backoff with jitter and a fresh hello
    forceNew: true,
    timeout: 10_000,
    path,
    // Node's websocket (ws) refuses frames over 100 MiB by default: a model over ~26M parameters
    // (GPT-2 small's params frame is ~500 MB) never reached a Node worker. Browsers have no such
    // limit. engine.io-client hands maxPayload to ws; socket.io-client's types do not list it.
    ...{ maxPayload: MAX_INCOMING_FRAME_BYTES },
  };
}

export class WorkerClient {
  private socket?: WorkerSocket;
  private epoch = 0;
  private readonly work = new WorkChain();
  private readonly session: EngineSession;
  /** One handler per worker role; a plan whose role has none waits. */
  private readonly handlers: TaskHandler[];
  private welcome?: WelcomeMsg;
  private heartbeatTimer?: ReturnType<typeof setInterval>;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private readonly backoff: Backoff;
  private readonly faults: FaultWrappers;
  private readonly receiveParams: ParamsSink;
  private stopped = false;
  private paused = false;
  private stopResolvers: Array<() => void> = [];
  /** Which of the coordinator URLs the next connection goes to. */
  private urlIndex = 0;
  private readonly book: StatsBook;
  readonly stats: WorkerStats;

  constructor(private readonly opts: WorkerClientOptions) {
    const seed = opts.seed ?? 1;
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_BACKOFF, seed ^ 0x5bd1e995);
    this.book = new StatsBook(opts.host.backend, opts.onStats);
    this.stats = this.book.stats;
    this.session = new EngineSession(opts.host, {
      memoryCapBytes: opts.userCapBytes,
      onLost: (reason) => {
        if (!this.stopped) this.onDeviceLost(reason);
      },
    });
    this.faults = faultWrappers(opts.fault ?? { kind: 'none' }, seed, {
      log: (level, msg) => this.log(level, msg),
      count: (c) => this.book.count(c),
      heldVersion: () => this.session.paramsVersion,
      identity: () => this.stats.workerId,
    });
    this.handlers = roleHandlers(this.faults);
    this.receiveParams = this.faults.params((p) => this.enqueue(this.epoch, async () => {
      await this.session.setParams(p.params, p.version);
      this.book.update({ version: p.version, step: p.step });
    }));
  }

  // ------------------------------------------------------------------ public API

  /** Describes the device and connects; resolves once the first connection attempt is under way. */
  async start(): Promise<void> {
    this.book.update({ state: 'starting', detail: 'finding the device' });
    const device = await this.session.describe();
    this.book.update({ adapter: device.adapter, probedBytes: device.probedBytes });
    if (this.stopped) return;
    this.connect();
  }

  /**
   * Leaves the cluster: drops queued work, sends `bye` so the coordinator re-leases our task at
   * once, disconnects, frees the engine. Idempotent.
   */
  async stop(reason = 'stopped'): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.session.close();
    this.leave(reason);
    clearTimeout(this.reconnectTimer);
    // Let queued backend work finish before freeing it (the epoch check makes it a no-op), but
    // do not wait out a long kernel compile: the volunteer asked to stop.
    await Promise.race([this.work.settled(), sleep(3_000)]);
    this.session.dispose();
    this.book.update({ state: 'stopped', detail: reason, connected: false });
    for (const r of this.stopResolvers.splice(0)) r();
  }

  /** Resolves when the client has stopped (by stop(), or a kick). */
  stoppedPromise(): Promise<void> {
    if (this.stopped && this.stats.state === 'stopped') return Promise.resolve();
    return new Promise((r) => this.stopResolvers.push(r));
  }

  /** Hidden tab: leave like stop() (lease returned now) but keep the id and the engine. */
  pause(reason = 'paused'): void {
    if (this.stopped || this.paused) return;
    this.paused = true;
    this.leave(reason);
    clearTimeout(this.reconnectTimer);
    this.book.update({ state: 'paused', detail: reason, connected: false });
  }

  resume(): void {
    if (this.stopped || !this.paused) return;
    this.paused = false;
    this.backoff.reset();
    this.connect();
  }

  // ------------------------------------------------------------------ connection

  private connect(): void {
    if (this.stopped || this.paused) return;
    // One socket at a time, whichever path (timer, resume, rebuild) asked for this one.
    clearTimeout(this.reconnectTimer);
    this.teardownSocket();
    const epoch = ++this.epoch;
    const urls = this.opts.urls?.length ? this.opts.urls : [this.opts.url];
    const url = urls[this.urlIndex % urls.length];
    this.book.update({ state: 'connecting', detail: `connecting to ${url}` });
    const socket: WorkerSocket = io(url, workerSocketOptions(this.opts.path));
    this.opts.wrapSocket?.(socket);
    this.socket = socket;
    const live = () => epoch === this.epoch && !this.stopped && !this.paused;

    socket.on('connect', () => {
      if (!live()) return;
      this.book.update({ connected: true, detail: 'connected, saying hello' });
      socket.emit('hello', helloMessage({
        backend: this.opts.host.backend,
        device: this.session.device!,
        userCapBytes: this.opts.userCapBytes,
        resumeId: this.stats.workerId,
        name: this.opts.name,
        agent: this.opts.agent,
        joinToken: this.opts.joinToken,
      }));
    });
    socket.on('connect_error', (err) => {
      if (!live()) return;
      this.log('warn', `cannot connect to ${url}: ${err.message}`);
      this.scheduleReconnect(epoch, err.message);
    });
    socket.on('disconnect', (reason) => {
      if (!live()) return;
      this.log('warn', `disconnected: ${reason}`);
      this.scheduleReconnect(epoch, `disconnected (${reason})`);
    });
    socket.on('welcome', (m) => live() && this.onWelcome(epoch, m));
    socket.on('params', (m) => live() && this.onParams(m));
    for (const h of this.handlers) {
      // Handler events are declared by each role; the payload is validated by the handler.
      (socket.on as (ev: string, fn: (m: unknown) => void) => void)(h.event, (m) => live() && this.onTask(epoch, h, m));
    }
    socket.on('ack', (m) => live() && this.onAck(m));
    if (this.opts.trace) attachTrace(socket, live, this.opts.trace, (msg) => this.log('info', msg));
    socket.on('reject', (m) => live() && this.onReject(m));
    socket.on('wait', (m) => live() && this.onWait(m));
    socket.on('notice', (m) => live() && this.onNotice(m));
    socket.on('heartbeat', (m) => {
      if (live() && m && typeof m.t === 'number' && Number.isFinite(m.t)) this.book.update({ rttMs: Math.max(0, now() - m.t) });
    });
  }

  private scheduleReconnect(epoch: number, why: string): void {
    if (epoch !== this.epoch) return;
    this.epoch++; // invalidates queued work and late events of the dead socket
    this.urlIndex++; // with several coordinator URLs, the next attempt goes to the next one
    this.teardownSocket();
    const delay = this.backoff.next();
    this.book.count('reconnects');
    this.book.update({ state: 'connecting', connected: false, detail: `${why}; retrying in ${(delay / 1000).toFixed(1)} s` });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  /** Sends bye (if connected) and closes the socket without scheduling a reconnect. */
  private leave(reason: string): void {
    this.epoch++;
    const s = this.socket;
    if (s?.connected) s.emit('bye', { reason });
    this.teardownSocket();
  }

  private teardownSocket(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    const s = this.socket;
    this.socket = undefined;
    if (s) {
      s.removeAllListeners();
      s.disconnect(); // flushes what was emitted before (bye) then closes
    }
  }

  /** The connection of `epoch`, as task handlers and fault wrappers see it. */
  private channel(epoch: number): Channel {
    return socketChannel({ current: () => epoch === this.epoch, running: () => !this.stopped, socket: () => this.socket });
  }

  // ------------------------------------------------------------------ server messages

  private onWelcome(epoch: number, raw: unknown): void {
    const v = validateWelcome(raw);
    if (!v.ok) {
      this.log('error', `coordinator sent an invalid welcome (${v.code}: ${v.message}); reconnecting`);
      this.scheduleReconnect(epoch, 'invalid welcome');
      return;
    }
    const w = v.value;
    this.welcome = w;
    this.backoff.reset();
    const resumed = this.stats.workerId === w.workerId;
    this.book.update({ workerId: w.workerId, plan: w.plan, model: w.model, paramCount: w.paramCount, detail: `joined as ${w.workerId}` });
    this.log('info', `${resumed ? 'rejoined' : 'joined'} as ${w.workerId}: ${w.preset}, ${w.paramCount} params, plan ${w.plan.role} (micro-batch ${w.plan.microBatch}) ${w.plan.reason}`);
    const hbMs = w.heartbeatMs > 0 ? w.heartbeatMs : DEFAULT_HEARTBEAT_MS;
    clearInterval(this.heartbeatTimer);
    const ch = this.channel(epoch);
    this.heartbeatTimer = setInterval(() => {
      ch.emit('heartbeat', { t: now(), state: this.book.wireState() });
    }, hbMs);
    const handler = this.handlers.find((h) => h.role === w.plan.role);
    if (!handler) this.book.update({ state: 'waiting', detail: w.plan.reason });
    else this.book.update({ state: 'idle' });
    // An engine that compiles per shape must not compile while holding a lease (it would block
    // for ~30 s on SwiftShader in Node, missing heartbeats and the lease): leave, build and warm it
    // up on a throwaway batch of the plan's shape, then come back under the same id.
    const shape = handler?.warmUpShape(w.plan);
    if (shape && this.session.needsWarmUp(w.model, shape)) {
      this.log('info', `warming up the engine for micro-batch ${shape.B} x ${shape.T} before taking work`);
      this.leave('warming up the engine');
      this.book.update({ state: 'warming up', connected: false, detail: `compiling kernels for ${shape.B} x ${shape.T}` });
      const warmEpoch = this.epoch;
      const current = () => !this.stopped && !this.paused && warmEpoch === this.epoch;
      this.work.then(async () => {
        // Let the bye leave the process before a blocking compile.
        await sleep(50);
        if (!current()) return;
        try {
          const ms = await this.session.warmUp(w.model, w.paramCount, shape);
          this.log('info', `engine ready in ${(ms / 1000).toFixed(1)} s; rejoining`);
        } catch (e) {
          this.log('error', `engine warm-up failed: ${(e as Error).message}`);
          await this.stop(`engine warm-up failed: ${(e as Error).message}`);
          return;
        }
        if (current()) this.connect();
      });
      return;
    }
    // Build (or keep) the backend for this model on the chain, before any params/task (a stage
    // builds its own backend for its blocks when it is given them).
    if (!handler?.ownEngine) void this.enqueue(epoch, () => this.session.ensure(w.model));
  }

  private onParams(raw: unknown): void {
    const w = this.welcome;
    if (!w) return this.log('warn', 'params before welcome: ignored');
    const v = validateParams(raw, w.paramCount);
    if (!v.ok) return this.log('error', `coordinator sent invalid params (${v.code}: ${v.message}); ignored`);
    void this.receiveParams(v.value);
  }

  private onTask(epoch: number, handler: TaskHandler, raw: unknown): void {
    const w = this.welcome;
    if (!w) return this.log('warn', 'task before welcome: ignored');
    const v = handler.validate(raw, w);
    if (!v.ok) return this.log('error', `coordinator sent an invalid task (${v.code}: ${v.message}); ignored`);
    const ctx: TaskContext = {
      session: this.session,
      welcome: w,
      stats: this.book,
      channel: this.channel(epoch),
      receivedAt: now(),
      log: (level, msg) => this.log(level, msg),
    };
    void this.enqueue(epoch, () => handler.run(v.value, ctx));
  }

  private onAck(m: AckMsg): void {
    this.book.count('accepted');
    this.book.update({ detail: `task ${String(m?.taskId)} accepted` });
  }

  private onReject(m: RejectMsg): void {
    const code = typeof m?.code === 'string' ? m.code.slice(0, 32) : 'UNKNOWN';
    // Only rejected results count as rejected work; other events are protocol noise (garbage fault).
    this.book.rejectedMessage(code, m?.event);
    const msg = `${m?.event ?? '?'} rejected: ${code}: ${String(m?.message ?? '').slice(0, 200)}`;
    this.log(this.faults.rejectionLevel, msg);
    this.book.update({ detail: msg });
    // Sybil fault: forget the banned identity; the reconnect after the disconnect says hello as new.
    if (code === 'BANNED' && this.faults.rejoinAfterBan) return void this.book.update({ workerId: undefined });
    // Refusals that retrying cannot fix: leave with the coordinator's reason.
    if ((m?.event === 'hello' && (code === 'UNAUTHORIZED' || code === 'PROTOCOL_VERSION')) || code === 'BANNED') {
      this.log('error', `leaving: ${msg}`);
      void this.stop(`refused by the coordinator: ${msg}`);
    }
  }

  private onWait(m: WaitMsg): void {
    const reason = String(m?.reason ?? '').slice(0, 200);
    this.log('info', `waiting: ${reason}`);
    this.book.update({ state: 'waiting', detail: reason });
  }

  private onNotice(m: NoticeMsg): void {
    const text = String(m?.message ?? '').slice(0, 300);
    const level = m?.level === 'error' ? 'error' : m?.level === 'warn' ? 'warn' : 'info';
    this.log(level, `coordinator: ${text}`);
    if (m?.kind === 'kicked' && !this.faults.rejoinAfterBan) {
      // An admin removed us: coming straight back would defeat the kick.
      void this.stop(`kicked by the coordinator: ${text}`);
    }
  }

  // ------------------------------------------------------------------ engine work

  /** Runs `fn` on the chain unless connection `epoch` is gone by then; true if it ran without error. */
  private enqueue(epoch: number, fn: () => Promise<void>): Promise<boolean> {
    return this.work.gated(() => epoch === this.epoch && !this.stopped, fn, (e) => {
      this.log('error', `worker: ${e.message}`);
      this.book.update({ detail: e.message });
    });
  }

  /**
   * The GPU went away (driver reset, OOM, tab backgrounded on some mobiles). Report it, leave (bye:
   * the task in flight is lost and re-leased at once), get a new device, and rejoin under the same
   * id; the welcome path rebuilds (and warms up) the engine before any new work is taken.
   */
  private onDeviceLost(reason: string): void {
    this.book.count('deviceLosses');
    this.log('warn', `device lost (${reason}); rebuilding the engine`);
    if (!this.paused) this.leave(`device lost: ${reason}`);
    this.book.update({ state: 'rebuilding', connected: false, detail: `device lost: ${reason}` });
    this.work.then(async () => {
      if (this.stopped) return;
      try {
        await this.session.rebuildAfterLoss();
        this.log('info', 'new device acquired; engine rebuilt');
      } catch (e) {
        this.log('error', `engine rebuild failed: ${(e as Error).message}; leaving`);
        await this.stop(`device lost and could not be rebuilt: ${(e as Error).message}`);
        return;
      }
      if (this.paused) this.book.update({ state: 'paused', detail: 'engine rebuilt after device loss' });
      else this.connect();
    });
  }

  // ------------------------------------------------------------------ helpers

  private log(level: LogLevel, msg: string): void {
    this.opts.log?.(level, msg);
  }
}
