// The worker loop, shared by the Node worker and the browser tab's Web Worker: connect, hello,
// welcome (keep the id, the plan), params, tasks -> backend -> results, ack/reject, heartbeats,
// reconnect with backoff + jitter, engine rebuild after device loss, clean stop with `bye`, and
// the fault injection the chaos suite uses.
//
// Ordering: every backend operation (setParams, forwardBackward) runs on one promise chain, in the
// order the messages arrived, so a task never runs against half-uploaded parameters. Each socket
// connection has an epoch; work queued under an older epoch is dropped (its lease is re-leased by
// the coordinator), and nothing is ever emitted on a socket that is not connected (socket.io
// would buffer it and send it before the next hello).

import { io, type Socket } from 'socket.io-client';
import type { TrainingBackend, GradientResult, MicroBatch } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { Rng } from '../../shared/rng.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import {
  PROTOCOL_VERSION,
  DEFAULT_HEARTBEAT_MS,
  type AckMsg,
  type ClientToServerEvents,
  type HelloMsg,
  type NoticeMsg,
  type RejectMsg,
  type ResultMsg,
  type ServerToClientEvents,
  type TaskMsg,
  type WaitMsg,
  type WelcomeMsg,
  type WirePlan,
  type WorkerState,
} from '../../shared/protocol/messages.ts';
import { validateParams, validateTask, validateWelcome } from '../../shared/protocol/validate.ts';
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts';
import { corruptGradient, garbageMessages, l2norm, GARBAGE_KINDS, type FaultSpec } from './faults.ts';
import type { DeviceDescription, EngineHost } from './engine-host.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Everything the tab and the Node log show; a fresh copy is passed to onStats on every change. */
export interface WorkerStats {
  /** Loop state: what the volunteer sees. */
  state: 'starting' | 'connecting' | 'warming up' | 'waiting' | 'idle' | 'computing' | 'paused' | 'rebuilding' | 'stopped';
  /** Why (wait reason, last error, stop reason). */
  detail: string;
  connected: boolean;
  workerId?: string;
  backend: string;
  adapter?: DeviceDescription['adapter'];
  probedBytes?: number;
  plan?: WirePlan;
  model?: ModelConfig;
  paramCount?: number;
  step: number;
  version: number;
  tasksDone: number;
  accepted: number;
  rejected: number;
  rejectedByCode: Record<string, number>;
  lastLoss?: number;
  tokens: number;
  /** Tokens/s over the recent tasks (compute time only). */
  tokensPerSec: number;
  /** Total forward+backward time spent for the cluster, ms. */
  gpuMs: number;
  reconnects: number;
  deviceLosses: number;
  /** Malformed messages sent (fault garbage). */
  garbageSent: number;
  /** Results replayed (fault stale). */
  replays: number;
  rttMs?: number;
}

export interface WorkerClientOptions {
  url: string;
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
}

type WorkerSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

interface Sent {
  msg: ResultMsg;
}

export class WorkerClient {
  private socket?: WorkerSocket;
  private epoch = 0;
  private chain: Promise<void> = Promise.resolve();
  private backend?: TrainingBackend;
  private backendModelKey = '';
  /** Measured compute time per sequence row, ms (sizes the CPU backend's time slices). */
  private msPerRow = 0;
  /** Model and micro-batch shape the engine's kernels were compiled for (fixed-shape engines). */
  private warmKey = '';
  private device?: DeviceDescription;
  private welcome?: WelcomeMsg;
  private params?: Float32Array;
  private paramsVersion = -1;
  /** Params on the backend are stale (rebuilt engine): re-upload before the next task. */
  private needUpload = false;
  private heartbeatTimer?: ReturnType<typeof setInterval>;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private readonly backoff: Backoff;
  private readonly rng: Rng;
  private readonly fault: FaultSpec;
  private stopped = false;
  private paused = false;
  private lastSent?: Sent;
  private garbageCursor = 0;
  private staleFrozen = false;
  private rateWindow: Array<{ tokens: number; ms: number }> = [];
  private stopResolvers: Array<() => void> = [];
  readonly stats: WorkerStats;

  constructor(private readonly opts: WorkerClientOptions) {
    const seed = opts.seed ?? 1;
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_BACKOFF, seed ^ 0x5bd1e995);
    this.rng = new Rng(seed);
    this.fault = opts.fault ?? { kind: 'none' };
    this.stats = {
      state: 'starting', detail: '', connected: false, backend: opts.host.backend, step: 0, version: -1,
      tasksDone: 0, accepted: 0, rejected: 0, rejectedByCode: {}, tokens: 0, tokensPerSec: 0, gpuMs: 0,
      reconnects: 0, deviceLosses: 0, garbageSent: 0, replays: 0,
    };
  }

  // ------------------------------------------------------------------ public API

  /** Describes the device and connects; resolves once the first connection attempt is under way. */
  async start(): Promise<void> {
    this.update({ state: 'starting', detail: 'finding the device' });
    this.device = await this.opts.host.describe();
    this.update({ adapter: this.device.adapter, probedBytes: this.device.probedBytes });
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
    this.leave(reason);
    clearTimeout(this.reconnectTimer);
    // Let queued backend work finish before freeing it (the epoch check makes it a no-op), but
    // do not wait out a long kernel compile: the volunteer asked to stop.
    await Promise.race([this.chain.catch(() => undefined), sleep(3_000)]);
    this.backend?.dispose();
    this.backend = undefined;
    this.update({ state: 'stopped', detail: reason, connected: false });
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
    this.update({ state: 'paused', detail: reason, connected: false });
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
    this.update({ state: 'connecting', detail: `connecting to ${this.opts.url}` });
    const socket: WorkerSocket = io(this.opts.url, {
      parser: msgpackParser,
      transports: ['websocket'],
      reconnection: false, // ours: backoff with jitter and a fresh hello
      forceNew: true,
      timeout: 10_000,
      path: this.opts.path,
    });
    this.socket = socket;
    const live = () => epoch === this.epoch && !this.stopped && !this.paused;

    socket.on('connect', () => {
      if (!live()) return;
      this.update({ connected: true, detail: 'connected, saying hello' });
      const d = this.device!;
      const hello: HelloMsg = {
        protocol: PROTOCOL_VERSION,
        backend: this.opts.host.backend,
        adapter: d.adapter,
        limits: d.limits,
        probedBytes: d.probedBytes,
        userCapBytes: this.opts.userCapBytes,
        resumeId: this.stats.workerId,
        name: this.opts.name,
        agent: this.opts.agent ?? 'worker-client/0.1',
        joinToken: this.opts.joinToken,
      };
      socket.emit('hello', dropUndefined(hello));
    });
    socket.on('connect_error', (err) => {
      if (!live()) return;
      this.log('warn', `cannot connect to ${this.opts.url}: ${err.message}`);
      this.scheduleReconnect(epoch, err.message);
    });
    socket.on('disconnect', (reason) => {
      if (!live()) return;
      this.log('warn', `disconnected: ${reason}`);
      this.scheduleReconnect(epoch, `disconnected (${reason})`);
    });
    socket.on('welcome', (m) => live() && this.onWelcome(epoch, m));
    socket.on('params', (m) => live() && this.onParams(epoch, m));
    socket.on('task', (m) => live() && this.onTask(epoch, m));
    socket.on('ack', (m) => live() && this.onAck(m));
    socket.on('reject', (m) => live() && this.onReject(m));
    socket.on('wait', (m) => live() && this.onWait(m));
    socket.on('notice', (m) => live() && this.onNotice(m));
    socket.on('heartbeat', (m) => {
      if (live() && m && typeof m.t === 'number' && Number.isFinite(m.t)) this.update({ rttMs: Math.max(0, now() - m.t) });
    });
  }

  private scheduleReconnect(epoch: number, why: string): void {
    if (epoch !== this.epoch) return;
    this.epoch++; // invalidates queued work and late events of the dead socket
    this.teardownSocket();
    const delay = this.backoff.next();
    this.stats.reconnects++;
    this.update({ state: 'connecting', connected: false, detail: `${why}; retrying in ${(delay / 1000).toFixed(1)} s` });
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

  private emit<E extends keyof ClientToServerEvents>(epoch: number, ev: E, ...args: Parameters<ClientToServerEvents[E]>): boolean {
    const s = this.socket;
    if (epoch !== this.epoch || !s?.connected) return false;
    s.emit(ev, ...args);
    return true;
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
    this.update({ workerId: w.workerId, plan: w.plan, model: w.model, paramCount: w.paramCount, detail: `joined as ${w.workerId}` });
    this.log('info', `${resumed ? 'rejoined' : 'joined'} as ${w.workerId}: ${w.preset}, ${w.paramCount} params, plan ${w.plan.role} (micro-batch ${w.plan.microBatch}) ${w.plan.reason}`);
    const hbMs = w.heartbeatMs > 0 ? w.heartbeatMs : DEFAULT_HEARTBEAT_MS;
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => {
      this.emit(epoch, 'heartbeat', { t: now(), state: this.wireState() });
    }, hbMs);
    if (w.plan.role !== 'replica') this.update({ state: 'waiting', detail: w.plan.reason });
    else this.update({ state: 'idle' });
    const key = JSON.stringify(w.model);
    // An engine that compiles per shape must not compile while holding a lease (it would block
    // for ~30 s on SwiftShader in Node, missing heartbeats and the lease): leave, build and warm it
    // up on a throwaway batch of the plan's shape, then come back under the same id.
    const shapeKey = `${key}|${w.plan.microBatch}x${w.plan.seqLen}`;
    if (this.opts.host.fixedShape && w.plan.role === 'replica' && w.plan.microBatch > 0 && this.warmKey !== shapeKey) {
      this.log('info', `warming up the engine for micro-batch ${w.plan.microBatch} x ${w.plan.seqLen} before taking work`);
      this.leave('warming up the engine');
      this.update({ state: 'warming up', connected: false, detail: `compiling kernels for ${w.plan.microBatch} x ${w.plan.seqLen}` });
      const warmEpoch = this.epoch;
      this.chain = this.chain.then(async () => {
        // Let the bye leave the process before a blocking compile.
        await sleep(50);
        if (this.stopped || this.paused || warmEpoch !== this.epoch) return;
        try {
          if (!this.backend || this.backendModelKey !== key) {
            this.backend?.dispose();
            this.backend = undefined;
            this.params = undefined;
            this.paramsVersion = -1;
            await this.buildBackend(w.model);
            this.backendModelKey = key;
          }
          const t0 = now();
          await this.backend!.setParams(this.params ?? new Float32Array(w.paramCount));
          await this.backend!.forwardBackward(warmupBatch(w.plan.microBatch, w.plan.seqLen));
          this.warmKey = shapeKey;
          this.needUpload = this.params !== undefined;
          this.log('info', `engine ready in ${((now() - t0) / 1000).toFixed(1)} s; rejoining`);
        } catch (e) {
          this.log('error', `engine warm-up failed: ${(e as Error).message}`);
          await this.stop(`engine warm-up failed: ${(e as Error).message}`);
          return;
        }
        if (!this.stopped && !this.paused && warmEpoch === this.epoch) this.connect();
      }).catch(() => undefined);
      return;
    }
    // Build (or keep) the backend for this model on the chain, before any params/task.
    this.enqueue(epoch, async () => {
      if (this.backend && this.backendModelKey === key) return;
      this.backend?.dispose();
      this.backend = undefined;
      this.params = undefined;
      this.paramsVersion = -1;
      await this.buildBackend(w.model);
      this.backendModelKey = key;
    });
  }

  private onParams(epoch: number, raw: unknown): void {
    const w = this.welcome;
    if (!w) return this.log('warn', 'params before welcome: ignored');
    const v = validateParams(raw, w.paramCount);
    if (!v.ok) return this.log('error', `coordinator sent invalid params (${v.code}: ${v.message}); ignored`);
    const p = v.value;
    if (this.fault.kind === 'stale' && this.staleFrozen) {
      this.log('debug', `fault stale: ignoring params version ${p.version}, keeping ${this.paramsVersion}`);
      return;
    }
    this.enqueue(epoch, async () => {
      await this.backend!.setParams(p.params);
      this.params = p.params;
      this.paramsVersion = p.version;
      this.needUpload = false;
      if (this.fault.kind === 'stale') this.staleFrozen = true;
      this.update({ version: p.version, step: p.step });
    });
  }

  private onTask(epoch: number, raw: unknown): void {
    const w = this.welcome;
    if (!w) return this.log('warn', 'task before welcome: ignored');
    const v = validateTask(raw, w.model);
    if (!v.ok) return this.log('error', `coordinator sent an invalid task (${v.code}: ${v.message}); ignored`);
    const task = v.value;
    const received = now();
    this.enqueue(epoch, () => this.runTask(epoch, task, received));
  }

  private onAck(m: AckMsg): void {
    this.stats.accepted++;
    this.update({ detail: `task ${String(m?.taskId)} accepted` });
  }

  private onReject(m: RejectMsg): void {
    const code = typeof m?.code === 'string' ? m.code.slice(0, 32) : 'UNKNOWN';
    this.stats.rejectedByCode[code] = (this.stats.rejectedByCode[code] ?? 0) + 1;
    // Only rejected results count as rejected work; other events are protocol noise (garbage fault).
    if (m?.event === 'result') this.stats.rejected++;
    const msg = `${m?.event ?? '?'} rejected: ${code}: ${String(m?.message ?? '').slice(0, 200)}`;
    this.log(this.fault.kind === 'none' ? 'warn' : 'debug', msg);
    this.update({ detail: msg });
    // Refusals that retrying cannot fix: leave with the coordinator's reason.
    if ((m?.event === 'hello' && (code === 'UNAUTHORIZED' || code === 'PROTOCOL_VERSION')) || code === 'BANNED') {
      this.log('error', `leaving: ${msg}`);
      void this.stop(`refused by the coordinator: ${msg}`);
    }
  }

  private onWait(m: WaitMsg): void {
    const reason = String(m?.reason ?? '').slice(0, 200);
    this.log('info', `waiting: ${reason}`);
    this.update({ state: 'waiting', detail: reason });
  }

  private onNotice(m: NoticeMsg): void {
    const text = String(m?.message ?? '').slice(0, 300);
    const level = m?.level === 'error' ? 'error' : m?.level === 'warn' ? 'warn' : 'info';
    this.log(level, `coordinator: ${text}`);
    if (m?.kind === 'kicked') {
      // An admin removed us: coming straight back would defeat the kick.
      void this.stop(`kicked by the coordinator: ${text}`);
    }
  }

  // ------------------------------------------------------------------ compute

  private enqueue(epoch: number, fn: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (epoch !== this.epoch || this.stopped) return;
      try {
        await fn();
      } catch (e) {
        this.log('error', `worker: ${(e as Error).message}`);
        this.update({ detail: (e as Error).message });
      }
    });
  }

  private async buildBackend(model: ModelConfig): Promise<void> {
    const built = this.epoch;
    let lostOnce = false;
    this.backend = await this.opts.host.create(model, (reason) => {
      if (lostOnce || this.stopped) return;
      lostOnce = true;
      void this.onDeviceLost(reason, built);
    }, { memoryCapBytes: this.opts.userCapBytes });
  }

  /**
   * The GPU went away (driver reset, OOM, tab backgrounded on some mobiles). Report it, leave (bye:
   * the task in flight is lost and re-leased at once), get a new device, and rejoin under the same
   * id; the welcome path rebuilds (and warms up) the engine before any new work is taken.
   */
  private async onDeviceLost(reason: string, _builtAt: number): Promise<void> {
    this.stats.deviceLosses++;
    this.log('warn', `device lost (${reason}); rebuilding the engine`);
    const wasPaused = this.paused;
    if (!wasPaused) this.leave(`device lost: ${reason}`);
    this.update({ state: 'rebuilding', connected: false, detail: `device lost: ${reason}` });
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      try {
        this.backend?.dispose();
      } catch {
        /* already gone */
      }
      this.backend = undefined;
      this.backendModelKey = '';
      this.warmKey = '';
      this.needUpload = this.params !== undefined;
      try {
        this.device = await this.opts.host.describe();
        this.log('info', 'new device acquired; engine rebuilt');
      } catch (e) {
        this.log('error', `engine rebuild failed: ${(e as Error).message}; leaving`);
        await this.stop(`device lost and could not be rebuilt: ${(e as Error).message}`);
        return;
      }
      if (this.paused) this.update({ state: 'paused', detail: 'engine rebuilt after device loss' });
      else this.connect();
    }).catch(() => undefined);
  }

  private async runTask(epoch: number, task: TaskMsg, receivedAt: number): Promise<void> {
    const w = this.welcome!;
    const backend = this.backend;
    if (!backend) throw new Error(`task ${task.taskId}: no engine (device lost?), skipped`);
    if (now() - receivedAt > task.leaseMs) {
      this.log('warn', `task ${task.taskId}: lease expired before it could start, skipped`);
      return;
    }
    const stale = this.fault.kind === 'stale';
    if (task.version !== this.paramsVersion && !stale) {
      throw new Error(`task ${task.taskId}: needs parameter version ${task.version}, this worker holds ${this.paramsVersion}; skipped`);
    }
    if (this.needUpload && this.params) {
      await backend.setParams(this.params);
      this.needUpload = false;
    }
    this.update({ state: 'computing', step: task.step, detail: `task ${task.taskId} (step ${task.step})` });
    const fixed = Boolean(this.opts.host.fixedShape) && w.plan.microBatch > 0;
    let mb = w.plan.microBatch > 0 ? (fixed ? w.plan.microBatch : Math.min(w.plan.microBatch, task.B)) : task.B;
    if (!fixed) {
      // The CPU backend computes on this thread: slice the task so that heartbeats and socket.io
      // pongs get out between slices (a 20 s synchronous task would get us declared dead).
      const sliceMs = Math.min(SLICE_MS, (w.heartbeatMs > 0 ? w.heartbeatMs : DEFAULT_HEARTBEAT_MS) / 2);
      mb = Math.min(mb, this.msPerRow > 0 ? Math.max(1, Math.floor(sliceMs / this.msPerRow)) : 1);
    }
    const t0 = now();
    const r = await computeTask(backend, task, mb, fixed);
    const wall = now() - t0;
    const perRow = wall / task.B;
    this.msPerRow = this.msPerRow > 0 ? 0.5 * this.msPerRow + 0.5 * perRow : perRow;
    if (epoch !== this.epoch || this.stopped) return; // left meanwhile: the lease is already returned
    let rep = { grads: r.grads, gradNorm: r.gradNorm, nonFinite: r.nonFinite };
    rep = corruptGradient(this.fault, rep, this.rng);
    const result: ResultMsg = {
      taskId: task.taskId,
      step: task.step,
      version: stale ? this.paramsVersion : task.version,
      loss: r.loss,
      tokens: r.tokens,
      grads: rep.grads,
      gradNorm: rep.gradNorm,
      nonFinite: rep.nonFinite,
      timings: r.timings,
    };
    if (this.fault.kind === 'slow') await sleep(this.fault.ms);
    if (epoch !== this.epoch || this.stopped) return;
    if (this.fault.kind === 'garbage') {
      const junk = garbageMessages(result as unknown as Record<string, unknown>, 'result', 3, this.rng, this.garbageCursor);
      this.garbageCursor = (this.garbageCursor + junk.length) % GARBAGE_KINDS;
      for (const g of junk) {
        const s = this.socket;
        if (epoch !== this.epoch || !s?.connected) break;
        (s.emit as (ev: string, ...a: unknown[]) => void)(g.event, g.payload);
        this.stats.garbageSent++;
        this.log('debug', `fault garbage: sent ${g.label}`);
      }
    }
    if (stale && this.lastSent) {
      if (this.emit(epoch, 'result', this.lastSent.msg)) this.stats.replays++;
    }
    if (!this.emit(epoch, 'result', result)) return;
    if (stale) this.lastSent = { msg: { ...result, grads: result.grads.slice() } };
    this.stats.tasksDone++;
    this.stats.tokens += r.tokens;
    this.stats.gpuMs += r.timings.totalMs;
    this.rateWindow.push({ tokens: r.tokens, ms: wall });
    if (this.rateWindow.length > 8) this.rateWindow.shift();
    const tw = this.rateWindow.reduce((a, x) => a + x.tokens, 0);
    const mw = this.rateWindow.reduce((a, x) => a + x.ms, 0);
    this.update({
      state: 'idle',
      lastLoss: r.loss,
      tokensPerSec: mw > 0 ? (tw * 1000) / mw : 0,
      detail: `task ${task.taskId} sent (loss ${r.loss.toFixed(4)}, ${r.tokens} tokens, ${wall.toFixed(0)} ms)`,
    });
    this.log('debug', `step ${task.step} task ${task.taskId}: loss ${r.loss.toFixed(4)} tokens ${r.tokens} norm ${rep.gradNorm.toExponential(3)} ${wall.toFixed(0)} ms`);
  }

  // ------------------------------------------------------------------ helpers

  private wireState(): WorkerState {
    switch (this.stats.state) {
      case 'computing':
        return 'computing';
      case 'paused':
        return 'paused';
      case 'waiting':
        return 'waiting';
      default:
        return 'idle';
    }
  }

  private update(p: Partial<WorkerStats>): void {
    Object.assign(this.stats, p);
    this.opts.onStats?.({ ...this.stats, rejectedByCode: { ...this.stats.rejectedByCode } });
  }

  private log(level: LogLevel, msg: string): void {
    this.opts.log?.(level, msg);
  }
}

/**
 * Runs a task as micro-batches of at most `mb` rows (the plan's size) and combines them
 * token-weighted, so the result is the gradient of the mean loss over the task's masked tokens,
 * exactly what one forward+backward over the whole task gives.
 *
 * With `fixedShape`, every micro-batch is padded to exactly `mb` rows whose mask is 0: they add
 * nothing to the loss or the gradient (their output gradient is zero), and the WebGPU engine, whose
 * kernels are specialised per (B, T) and cost ~30 s to compile on SwiftShader, compiles once.
 */
export async function computeTask(backend: TrainingBackend, task: TaskMsg, mb: number, fixedShape = false): Promise<GradientResult> {
  const { B, T } = task;
  if (mb >= B && !(fixedShape && B < mb)) {
    const r = await backend.forwardBackward({ B, T, inputs: task.inputs, targets: task.targets, mask: task.mask });
    return { ...r, grads: r.grads.slice() };
  }
  let acc: Float32Array | undefined;
  let tokens = 0;
  let lossSum = 0;
  let totalMs = 0;
  for (let b0 = 0; b0 < B; b0 += mb) {
    const rows = Math.min(mb, B - b0);
    const batch = rowsOf(task, b0, rows, fixedShape ? mb : rows);
    if (b0 > 0) await yieldToEventLoop(); // let timers (heartbeats) and socket I/O run between slices
    const r = await backend.forwardBackward(batch);
    totalMs += r.timings.totalMs;
    acc ??= new Float32Array(r.grads.length);
    if (r.tokens > 0) {
      // Sum of per-micro-batch mean gradients weighted by tokens = sum over all tokens.
      const k = r.tokens;
      const g = r.grads;
      for (let i = 0; i < g.length; i++) acc[i] += g[i] * k;
      lossSum += r.loss * k;
      tokens += k;
    }
  }
  const grads = acc!;
  if (tokens > 0) for (let i = 0; i < grads.length; i++) grads[i] /= tokens;
  let nonFinite = 0;
  for (let i = 0; i < grads.length; i++) if (!Number.isFinite(grads[i])) nonFinite++;
  return { loss: tokens > 0 ? lossSum / tokens : 0, tokens, grads, gradNorm: l2norm(grads), nonFinite, timings: { totalMs } };
}

/** Rows [b0, b0+rows) of a task as a micro-batch of `padTo` rows (extra rows masked out). */
function rowsOf(task: TaskMsg, b0: number, rows: number, padTo: number): MicroBatch {
  const T = task.T;
  const lo = b0 * T;
  const hi = (b0 + rows) * T;
  if (padTo === rows) {
    return { B: rows, T, inputs: task.inputs.subarray(lo, hi), targets: task.targets.subarray(lo, hi), mask: task.mask.subarray(lo, hi) };
  }
  const inputs = new Int32Array(padTo * T);
  const targets = new Int32Array(padTo * T);
  const mask = new Uint8Array(padTo * T); // zeros: padding rows never count
  inputs.set(task.inputs.subarray(lo, hi));
  targets.set(task.targets.subarray(lo, hi));
  mask.set(task.mask.subarray(lo, hi));
  return { B: padTo, T, inputs, targets, mask };
}

/** A throwaway micro-batch of the plan's shape, to compile the engine's kernels before taking work. */
function warmupBatch(B: number, T: number): MicroBatch {
  const mask = new Uint8Array(B * T);
  mask[0] = 1;
  return { B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), mask };
}

function now(): number {
  return typeof performance !== 'undefined' ? performance.now() + (performance.timeOrigin ?? 0) : Date.now();
}

/** Longest compute slice on a backend that runs on the loop's own thread, ms (also <= heartbeat / 2). */
const SLICE_MS = 1_000;

function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function dropUndefined<T extends object>(o: T): T {
  const c = { ...o } as Record<string, unknown>;
  for (const k of Object.keys(c)) if (c[k] === undefined) delete c[k];
  return c as T;
}
