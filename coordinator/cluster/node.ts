// One process of a --redis run, wired: the election (election.ts), the leader stack while this
// process leads (leader.ts), the uplink of its gateway to whoever leads (uplink.ts), a heartbeat
// record in Redis (so every process can list the cluster and its workers), the leader's events
// fanned out to every process's bus (pub/sub), and operator commands from any process.
//
// Every process is a gateway: its workers connect to it and never need to know who leads. The
// leader's own gateway connects to its /cluster namespace over loopback like any other, so a
// failover changes nothing for workers but a slice whose partial was lost (re-leased).

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Server } from 'socket.io';
import type { Dataset } from '../../shared/data/index.ts';
import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { ClusterStatus, EvalPoint, StatusSnapshot, WorkerRow } from '../../shared/protocol/dashboard.ts';
import type { CoordinatorConfig } from '../config.ts';
import { tokenMatches } from '../security/token.ts';
import type { EventBus } from '../server/events.ts';
import type { WorkerHub } from '../server/hub.ts';
import type { ClusterPort } from './cluster-port.ts';
import { LeaderElection } from './election.ts';
import type { GatewayTrainer } from './gateway-trainer.ts';
import { LeaderStack, pickCheckpoint, readEpochFloor, type ClusterEvent, type LeaderSnapshot } from './leader.ts';
import { parseLease, runKeys, RunStore, type LeaseValue } from './redis.ts';
import { CLUSTER_NAMESPACE, Uplink } from './uplink.ts';

/** Heartbeat records: written this often, gone after 3 missed writes. */
const HEARTBEAT_MS = 1_000;
/** Worker rows a process publishes (the dashboard pages above 100 anyway). */
const ROWS_MAX = 500;

interface ProcRecord {
  id: string;
  url: string;
  role: 'leader' | 'gateway';
  workers: number;
  rows: WorkerRow[];
}

export interface ClusterNodeDeps {
  io: Server;
  redis: Redis;
  config: CoordinatorConfig;
  model: ModelConfig;
  dataset: Dataset;
  seqLen: number;
  runDir: string;
  runName: string;
  url: string;
  log: Logger;
  bus: EventBus;
  trainer: GatewayTrainer;
  hub: WorkerHub;
  port: ClusterPort;
}

export class ClusterNode {
  readonly id: string;
  readonly url: string;
  readonly store: RunStore;
  readonly evals: EvalPoint[] = [];
  private readonly election: LeaderElection;
  private readonly uplink: Uplink;
  private readonly sub: Redis;
  private leaderStack: LeaderStack | null = null;
  private view: { lease: LeaseValue | null; leaderSnap: LeaderSnapshot | null; procs: ProcRecord[]; redis: boolean } = { lease: null, leaderSnap: null, procs: [], redis: true };
  private beat: NodeJS.Timeout | null = null;
  /** True while a ban from another process is being applied (not to announce it again). */
  private adopting = false;
  private closed = false;

  constructor(private readonly d: ClusterNodeDeps) {
    const port = /:(\d+)$/.exec(d.url)?.[1] ?? '0';
    this.id = `${hostname().replace(/[^A-Za-z0-9.-]/g, '').slice(0, 24) || 'host'}-${port}-${randomBytes(2).toString('hex')}`;
    this.url = d.config.advertiseUrl ?? d.url;
    this.store = new RunStore(d.redis, runKeys(d.runName));
    this.sub = d.redis.duplicate();
    this.sub.on('error', () => {});
    const log = d.log.child({ cluster: d.runName, process: this.id });
    this.election = new LeaderElection(this.store, { id: this.id, url: this.url }, d.config.leaderTtlMs, () => readEpochFloor(d.runDir), {
      elected: (lease, token) => void this.lead(lease, token, log),
      lost: (why) => this.stopLeading(why),
    }, log);
    this.uplink = new Uplink({ store: this.store, trainer: d.trainer, port: d.port, hub: d.hub, me: { id: this.id }, joinToken: d.config.joinToken, log,
      minWorkers: d.config.minWorkers, clusterWorkers: () => d.hub.workers.replicas().length + this.view.procs.filter((p) => p.id !== this.id).reduce((a, p) => a + p.workers, 0) });
    // Gateways reach the leader here; only the leader admits them, and only with the run's secret.
    d.io.of(CLUSTER_NAMESPACE).use((socket, next) => {
      const given = (socket.handshake.auth as { secret?: unknown } | undefined)?.secret;
      if (!this.leaderStack) return next(new Error('cluster: this process is not the leader'));
      this.d.redis.get(this.store.keys.secret).then((secret) => {
        if (!secret || typeof given !== 'string' || !tokenMatches(given, secret)) return next(new Error('cluster: wrong run secret'));
        next();
      }, () => next(new Error('cluster: Redis unreachable')));
    });
  }

  async start(): Promise<void> {
    const k = this.store.keys;
    await this.store.secret(randomBytes(24).toString('base64url'));
    await this.sub.connect();
    await this.sub.subscribe(k.events, k.admin);
    this.sub.on('message', (channel, text) => this.onMessage(channel, text));
    // A ban by this process's gateway holds on every process: a banned identity must not simply
    // reconnect to the next URL in its list (Security logs each ban it carries out as below).
    this.d.bus.on('log', (e) => {
      if (e.code !== 'BANNED' || e.kind !== 'kick' || !e.workerId || e.message.startsWith('[leader]') || this.adopting) return;
      const ban = { cmd: 'ban', id: e.workerId, reason: e.message.slice(0, 300), at: e.t, from: this.id };
      void this.d.redis.publish(k.admin, JSON.stringify(ban)).catch(() => {});
    });
    this.election.start();
    this.uplink.start();
    const tick = () => void this.heartbeat();
    this.beat = setInterval(tick, HEARTBEAT_MS);
    this.beat.unref();
    tick();
  }

  get leading(): boolean {
    return this.leaderStack !== null && this.election.leading;
  }

  private async lead(lease: LeaseValue, token: string, log: Logger): Promise<void> {
    let committed: { step: number; epoch: number } | null = null;
    let paused = false;
    try {
      const [c, p] = await Promise.all([this.d.redis.get(this.store.keys.checkpoint), this.d.redis.get(this.store.keys.paused)]);
      committed = c ? (JSON.parse(c) as { step: number; epoch: number }) : null;
      paused = p !== null;
      await this.store.secret(randomBytes(24).toString('base64url')); // a restarted Redis lost it
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'cluster: elected, but Redis failed; giving the lease up');
      return this.election.resign(`Redis failed at the start of leading (${(e as Error).message})`);
    }
    if (this.closed || this.election.currentToken !== token) return;
    const d = this.d;
    try {
      this.startLeader(lease, token, log, committed, paused);
    } catch (e) {
      // A checkpoint of another model or data set, an unreadable --init-from: this process cannot
      // lead this run. Said loudly; the lease goes back (another process may fail the same way).
      log.error({ err: e }, 'cluster: cannot lead this run; giving the lease up');
      d.bus.logEntry({ level: 'error', kind: 'resume', message: `cannot lead this run: ${(e as Error).message}` });
      this.election.resign(`cannot lead: ${(e as Error).message}`);
    }
  }

  private startLeader(lease: LeaseValue, token: string, log: Logger, committed: { step: number; epoch: number } | null, paused: boolean): void {
    const d = this.d;
    this.leaderStack = new LeaderStack({
      nsp: d.io.of(CLUSTER_NAMESPACE), config: d.config, model: d.model, dataset: d.dataset, seqLen: d.seqLen, runDir: d.runDir, log,
      store: this.store, token, epoch: lease.epoch, me: { id: this.id, url: this.url },
      leading: () => this.election.currentToken === token,
      publish: (e) => void this.d.redis.publish(this.store.keys.events, JSON.stringify(e)).catch(() => {}),
    }, pickCheckpoint(d.runDir, committed));
    if (paused) this.leaderStack.hub.pause();
    // This process's /api/history and dashboards: the run's history as the checkpoint has it.
    d.trainer.seedHistory(this.leaderStack.trainer.history);
  }

  private stopLeading(why: string): void {
    const l = this.leaderStack;
    this.leaderStack = null;
    if (!l) return;
    this.d.bus.logEntry({ level: 'warn', kind: 'info', message: `this process stopped leading: ${why}` });
    void l.close();
  }

  /** The leader's events become this process's own (dashboards, metrics, /api/history). */
  private onMessage(channel: string, text: string): void {
    let m: unknown;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    const k = this.store.keys;
    if (channel === k.events) {
      const e = m as ClusterEvent;
      if (e.kind === 'step') {
        this.d.trainer.noteLeaderStep(e.p);
        this.d.bus.emit('step', e.p);
      } else if (e.kind === 'eval') {
        this.evals.push(e.e);
        this.d.bus.emit('eval', e.e);
      } else if (e.kind === 'checkpoint') this.d.bus.emit('checkpoint', e.c);
      else if (e.kind === 'log') this.d.bus.logEntry({ ...e.e, message: `[leader] ${e.e.message}` });
    } else if (channel === k.admin) {
      const a = m as { cmd?: string; id?: string; reason?: string; at?: number; from?: string };
      if (a.cmd === 'ban') {
        if (a.from === this.id || typeof a.id !== 'string') return;
        this.adopting = true;
        try {
          this.d.hub.security.reputation.restoreBan(a.id.slice(0, 64), `banned by ${String(a.from).slice(0, 64)}: ${String(a.reason ?? '').slice(0, 300)}`, typeof a.at === 'number' ? a.at : Date.now());
          this.d.hub.kick(a.id);
        } finally {
          this.adopting = false;
        }
        return;
      }
      if (a.cmd === 'pause') this.leaderStack?.hub.pause();
      else if (a.cmd === 'resume') this.leaderStack?.hub.resume();
      else if (a.cmd === 'kick' && typeof a.id === 'string') this.d.hub.kick(a.id);
      this.d.bus.emit('admin', { action: a.cmd === 'kick' ? 'kick' : a.cmd === 'pause' ? 'pause' : 'resume' });
    }
  }

  /** Publish this process's record, then refresh the cluster view (status reads it). */
  private async heartbeat(): Promise<void> {
    if (this.closed) return;
    const hub = this.d.hub;
    const live = hub.workers.connected();
    const rec: ProcRecord = { id: this.id, url: this.url, role: this.leading ? 'leader' : 'gateway', workers: live.length, rows: live.slice(0, ROWS_MAX).map((w) => hub.workers.row(w)) };
    const r = this.d.redis;
    const k = this.store.keys;
    try {
      await r.set(k.procPrefix + this.id, JSON.stringify(rec), 'PX', 3 * HEARTBEAT_MS);
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await r.scan(cursor, 'MATCH', k.procPrefix + '*', 'COUNT', 200);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      const [recs, lease, snap] = await Promise.all([keys.length ? r.mget(...keys) : Promise.resolve([]), r.get(k.leader), r.get(k.status)]);
      const procs = recs.filter((x): x is string => x !== null).map((x) => JSON.parse(x) as ProcRecord).sort((a, b) => a.id.localeCompare(b.id));
      this.view = { lease: parseLease(lease), leaderSnap: snap ? (JSON.parse(snap) as LeaderSnapshot) : null, procs, redis: true };
    } catch {
      this.view = { ...this.view, redis: false };
    }
  }

  /** This process's status, made the cluster's: the leader's training state, every process's workers. */
  status(base: StatusSnapshot): StatusSnapshot {
    const v = this.view;
    const lease = v.redis ? v.lease : null;
    const snap = this.leaderStack && this.leading ? this.leaderStack.snapshot() : lease && v.leaderSnap?.leader.epoch === lease.epoch ? v.leaderSnap : null;
    const others = v.procs.filter((p) => p.id !== this.id);
    const cluster: ClusterStatus = {
      run: this.d.runName, leader: lease?.id ?? null, epoch: lease?.epoch ?? 0, self: this.id, redis: v.redis,
      processes: [
        { id: this.id, url: this.url, role: this.leading ? ('leader' as const) : ('gateway' as const), workers: base.workers.filter((w) => w.state !== 'left' && w.state !== 'dead' && w.state !== 'kicked').length },
        ...others.map((p) => ({ id: p.id, url: p.url, role: p.role, workers: p.workers })),
      ].sort((a, b) => a.id.localeCompare(b.id)),
    };
    const workers = [...base.workers, ...others.flatMap((p) => p.rows)];
    if (!snap) return { ...base, workers, cluster };
    const { leader: _l, ...train } = snap;
    return { ...base, ...train, workers, cluster };
  }

  checkpointNow(reason: string): { step: number; file: string } {
    if (!this.leaderStack) {
      throw new AppError('ERR_NOT_LEADER', `checkpoint: this process (${this.id}) is a gateway; the leader (${this.view.lease?.id ?? 'none now'}) writes checkpoints`, 409,
        this.view.lease ? `POST ${this.view.lease.url}/api/admin/checkpoint` : 'wait for a leader (is Redis up?)');
    }
    return this.leaderStack.checkpointNow(reason);
  }

  /** Operator commands from any process: pause/resume go to the leader through Redis (and stick for the next one). */
  async admin(cmd: 'pause' | 'resume'): Promise<void> {
    const k = this.store.keys;
    try {
      if (cmd === 'pause') await this.d.redis.set(k.paused, '1');
      else await this.d.redis.del(k.paused);
      await this.d.redis.publish(k.admin, JSON.stringify({ cmd }));
    } catch (e) {
      throw new AppError('ERR_REDIS', `admin ${cmd}: Redis unreachable (${(e as Error).message}); nothing changed`, 503, 'retry once Redis is back');
    }
  }

  /** Kick a worker of any process: false when no process has it connected. */
  async kick(id: string): Promise<boolean> {
    if (this.d.hub.kick(id)) return true;
    if (!this.view.procs.some((p) => p.id !== this.id && p.rows.some((r) => r.id === id))) return false;
    try {
      await this.d.redis.publish(this.store.keys.admin, JSON.stringify({ cmd: 'kick', id }));
    } catch (e) {
      throw new AppError('ERR_REDIS', `admin kick: Redis unreachable (${(e as Error).message})`, 503, 'retry once Redis is back');
    }
    return true;
  }

  /** Leave the run: a final checkpoint when leading and asked, the lease handed back, records removed. */
  async close(o: { checkpoint?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (o.checkpoint && this.leaderStack) {
      try {
        this.leaderStack.checkpointNow('shutdown');
      } catch (e) {
        this.d.log.error({ err: e }, 'final checkpoint failed; the previous checkpoint stays valid');
      }
    }
    this.closed = true;
    if (this.beat) clearInterval(this.beat);
    this.uplink.stop();
    await this.election.stop();
    await this.d.redis.del(this.store.keys.procPrefix + this.id).catch(() => {});
    this.sub.disconnect();
    this.d.redis.disconnect();
  }
}
