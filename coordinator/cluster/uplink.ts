// A gateway's connection to the leader (--redis): one socket.io connection per process to the
// leader's `/cluster` namespace, speaking the worker protocol as ONE replica (hello, params, task,
// result, heartbeat, bye). The leader's address is the lease in Redis; when it changes (failover)
// the uplink follows. It connects only while this process has replica workers, so the leader
// never leases a slice to a gateway that cannot compute it.
//
// Task -> GatewayTrainer.offer (the slice); the gateway's own ReplicaAssigner splits it; the
// finished slice comes back through GatewayTrainer.onPartial and goes up as one `result`. The
// leader's ack releases the workers' held acks (ClusterPort); its reject, or losing the leader,
// drops them and abandons the slice.

import { io, type Socket } from 'socket.io-client';
import type { Logger } from 'pino';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import type { HistoryPoint } from '../../shared/protocol/dashboard.ts';
import { PROTOCOL_VERSION, type HelloMsg, type WelcomeMsg } from '../../shared/protocol/messages.ts';
import { validateParams, validateTask, validateWelcome } from '../../shared/protocol/validate.ts';
import type { WorkerHub } from '../server/hub.ts';
import type { ClusterPort } from './cluster-port.ts';
import type { GatewayTrainer, Partial, UnitLease } from './gateway-trainer.ts';
import type { LeaseValue, RunStore } from './redis.ts';

export const CLUSTER_NAMESPACE = '/cluster';
/** How often the uplink looks at the lease and at its own workers. */
const CHECK_MS = 250;
/** A gateway offers this much memory: its slice is split among its workers, never computed here. */
const UNIT_BYTES = 2 ** 40;

export interface UplinkDeps {
  store: RunStore;
  trainer: GatewayTrainer;
  port: ClusterPort;
  hub: WorkerHub;
  me: { id: string };
  joinToken?: string;
  /** --min-workers: the run starts once the cluster has this many workers (clusterWorkers). */
  minWorkers: number;
  clusterWorkers(): number;
  log: Logger;
}

export class Uplink {
  private socket: Socket | null = null;
  private target: LeaseValue | null = null;
  private conn = 0;
  private unitConn = -1;
  private welcome: WelcomeMsg | null = null;
  private hb: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  private checking = false;
  private pausedByLeader = false;
  private stopped = false;
  /** Once a leader welcomed this gateway the run has started: --min-workers no longer gates. */
  private started = false;

  constructor(private readonly d: UplinkDeps) {
    d.trainer.onPartial = (p, u, leases) => {
      d.port.settle(u.taskId, leases.map((l) => l.id));
      this.sendPartial(p, u);
    };
  }

  /** The leader this gateway is connected to (null: none). */
  get leader(): LeaseValue | null {
    return this.socket?.connected && this.welcome ? this.target : null;
  }

  start(): void {
    this.timer = setInterval(() => void this.check(), CHECK_MS);
    this.timer.unref();
    void this.check();
  }

  private async check(): Promise<void> {
    if (this.checking || this.stopped) return;
    this.checking = true;
    try {
      const wanted = this.d.hub.workers.replicas().length > 0 && (this.started || this.d.clusterWorkers() >= this.d.minWorkers);
      let lease: LeaseValue | null;
      try {
        lease = await this.d.store.lease();
      } catch {
        return; // Redis unreachable: keep what we have; a dead leader shows as a closed socket
      }
      if (this.stopped) return;
      if (!wanted || !lease) {
        if (this.socket) this.disconnect(wanted ? 'no leader' : 'no replica workers here', !wanted);
        return;
      }
      const t = this.target;
      if (this.socket && t && t.epoch === lease.epoch && t.url === lease.url) return;
      await this.connect(lease);
    } finally {
      this.checking = false;
    }
  }

  private async connect(lease: LeaseValue): Promise<void> {
    this.disconnect('the leader changed', false);
    let secret: string | null;
    try {
      secret = await this.d.store.redis.get(this.d.store.keys.secret);
    } catch {
      return;
    }
    if (!secret || this.stopped) return;
    const my = ++this.conn;
    const s = io(lease.url + CLUSTER_NAMESPACE, {
      parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true, timeout: 5_000,
      auth: { secret, gateway: this.d.me.id },
    });
    this.socket = s;
    this.target = lease;
    const mine = () => my === this.conn && !this.stopped;
    const log = this.d.log;
    s.on('connect', () => {
      if (!mine()) return;
      const hello: HelloMsg = {
        protocol: PROTOCOL_VERSION, backend: 'cpu', limits: { maxBufferSize: UNIT_BYTES, maxStorageBufferBindingSize: UNIT_BYTES }, userCapBytes: UNIT_BYTES,
        adapter: { vendor: 'cluster', architecture: 'gateway', description: `gateway ${this.d.me.id}`, isSoftware: false },
        name: this.d.me.id, agent: 'gateway/1', ...(this.d.joinToken ? { joinToken: this.d.joinToken } : {}),
      };
      s.emit('hello', hello);
    });
    s.on('connect_error', (e) => {
      if (!mine()) return;
      log.debug({ leader: lease.url, err: e.message }, 'cluster: cannot reach the leader yet');
      this.lost();
    });
    s.on('disconnect', (why) => {
      if (!mine()) return;
      log.warn({ leader: lease.url, why }, 'cluster: lost the leader');
      this.lost();
    });
    s.on('welcome', (raw: unknown) => {
      if (!mine()) return;
      const v = validateWelcome(raw);
      if (!v.ok || v.value.paramCount !== this.d.trainer.paramCount) {
        log.error({ leader: lease.url }, `cluster: the leader runs another model (${v.ok ? `${v.value.preset}, ${v.value.paramCount} parameters` : v.message}); start every process with the same --preset`);
        return this.lost();
      }
      this.welcome = v.value;
      this.started = true;
      log.info({ leader: lease.url, epoch: lease.epoch, unit: v.value.workerId }, 'cluster: joined the leader');
      // The run's history as this leader has it (from its checkpoint on): charts and /api/history
      // of every process show the run, not only the steps since it joined.
      if (lease.id !== this.d.me.id) void this.fetchHistory(lease.url, my);
      if (this.hb) clearInterval(this.hb);
      this.hb = setInterval(() => s.connected && s.emit('heartbeat', { t: Date.now(), state: 'computing' }), v.value.heartbeatMs);
      this.hb.unref();
    });
    s.on('params', (raw: unknown) => {
      if (!mine()) return;
      const v = validateParams(raw, this.d.trainer.paramCount);
      if (!v.ok) return log.error(`cluster: invalid params from the leader (${v.message})`);
      this.d.trainer.setParams(v.value);
      this.d.hub.scheduler.schedule();
    });
    s.on('task', (raw: unknown) => {
      if (!mine()) return;
      const v = validateTask(raw, this.d.trainer.model);
      if (!v.ok) return log.error(`cluster: invalid task from the leader (${v.message})`);
      const why = this.d.trainer.offer(v.value);
      if (why) return log.error({ task: v.value.taskId }, `cluster: cannot take the leader's slice: ${why}`);
      this.unitConn = my;
      if (this.pausedByLeader) {
        this.pausedByLeader = false;
        this.d.hub.resume();
      }
      this.d.hub.scheduler.schedule();
    });
    s.on('ack', (m: { taskId?: unknown }) => {
      if (mine() && typeof m?.taskId === 'string') this.d.port.release(m.taskId);
    });
    s.on('discard', (m: { taskIds?: unknown; reason?: unknown }) => {
      if (mine() && Array.isArray(m?.taskIds)) this.d.port.discard(m.taskIds.filter((x): x is string => typeof x === 'string'), `the leader restarted its step: ${String(m.reason ?? '').slice(0, 200)}`);
    });
    s.on('reject', (m: { event?: unknown; code?: unknown; message?: unknown; taskId?: unknown }) => {
      if (!mine()) return;
      if (typeof m?.taskId === 'string') this.d.port.drop(m.taskId);
      log.warn({ code: m?.code, task: m?.taskId }, `cluster: the leader refused ${String(m?.event)}: ${String(m?.message).slice(0, 200)}`);
    });
    s.on('wait', (m: { code?: unknown }) => {
      if (!mine()) return;
      if (m?.code === 'paused' && !this.d.hub.paused) {
        this.pausedByLeader = true;
        this.d.hub.pause();
      } else if (m?.code === 'finished') {
        this.d.trainer.markFinished(true);
        this.d.hub.scheduler.schedule();
      }
    });
  }

  private async fetchHistory(url: string, my: number): Promise<void> {
    try {
      const r = await fetch(`${url}/api/history`, { signal: AbortSignal.timeout(5_000) });
      const body = (await r.json()) as { points?: unknown };
      if (my !== this.conn || !Array.isArray(body.points)) return;
      const points = body.points.filter((p): p is HistoryPoint => typeof p === 'object' && p !== null && Number.isInteger((p as HistoryPoint).step) && typeof (p as HistoryPoint).loss === 'number');
      this.d.trainer.seedHistory(points, true);
    } catch (e) {
      this.d.log.debug({ err: (e as Error).message }, 'cluster: no history from the leader');
    }
  }

  private sendPartial(p: Partial, u: UnitLease): void {
    const s = this.socket;
    if (!s || !s.connected || this.unitConn !== this.conn) {
      this.d.port.drop(u.taskId);
      return;
    }
    s.emit('result', p);
  }

  /** The leader went away (or refused us): the slice is abandoned, held acks are dropped. */
  private lost(): void {
    this.conn++;
    const s = this.socket;
    this.socket = null;
    this.target = null;
    this.welcome = null;
    if (this.hb) clearInterval(this.hb);
    this.hb = null;
    if (s) {
      s.removeAllListeners();
      s.disconnect();
    }
    const u = this.d.trainer.abandon();
    this.d.port.dropAll();
    if (u) this.d.log.warn({ slice: u.taskId }, 'cluster: slice abandoned (the leader re-leases it)');
  }

  private disconnect(why: string, bye: boolean): void {
    const s = this.socket;
    if (!s) return;
    if (bye && s.connected) s.emit('bye', { reason: why });
    this.d.log.info({ why }, 'cluster: leaving the leader');
    this.lost();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.disconnect('shutting down', true);
  }
}
