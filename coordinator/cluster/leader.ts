// The leader's half of a --redis run: the real Trainer (parameters, AdamW, data cursor, the
// exactly-once ledger), resumed from the newest checkpoint the run directory holds, and a
// WorkerHub on the `/cluster` namespace whose "workers" are the gateways (every process, this
// one included, connects its gateway there). The unchanged ReplicaAssigner leases each gateway a
// throughput-proportional slice of the step and folds the gateways' partials with the streaming
// mean: the reduction tree's root. Checkpoints are written only while the lease surely holds
// (fence) and committed in Redis under it (fenced set).
//
// Everything here is dropped when the lease is lost: a later leader starts again from the
// newest checkpoint, so the steps since then are redone (their rows were never checkpointed).

import { rmSync, writeFileSync, readFileSync, renameSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import type { Namespace } from 'socket.io';
import type { Dataset } from '../../shared/data/index.ts';
import { AppError, isAppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { EvalPoint, HistoryPoint, LogEntry, StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { readCheckpoint, type CheckpointData } from '../checkpoint/format.ts';
import { listCheckpoints, saveCheckpoint } from '../checkpoint/store.ts';
import type { CoordinatorConfig } from '../config.ts';
import { importForTraining } from '../export/import.ts';
import { EventBus } from '../server/events.ts';
import { WorkerHub } from '../server/hub.ts';
import { Evaluator } from '../train/evaluate.ts';
import { Trainer } from '../train/trainer.ts';
import type { RunStore } from './redis.ts';

/** What the leader tells every process (Redis pub/sub `events`): they re-emit it on their bus. */
export type ClusterEvent =
  | { kind: 'step'; p: HistoryPoint }
  | { kind: 'eval'; e: EvalPoint }
  | { kind: 'checkpoint'; c: { step: number; file: string; ms: number } }
  | { kind: 'log'; e: LogEntry };

/** The leader's part of the status, published in Redis for every process's /api/status. */
export type LeaderSnapshot = Omit<StatusSnapshot, 'workers' | 'security' | 'wire' | 'uptimeSec' | 'task'> & { leader: { id: string; epoch: number; url: string } };

export interface LeaderDeps {
  nsp: Namespace;
  config: CoordinatorConfig;
  model: ModelConfig;
  dataset: Dataset;
  seqLen: number;
  runDir: string;
  log: Logger;
  store: RunStore;
  token: string;
  epoch: number;
  me: { id: string; url: string };
  /** True while the lease surely holds (LeaderElection.leading). */
  leading(): boolean;
  publish(e: ClusterEvent): void;
}

/** The epoch of the newest leader, kept beside the checkpoints: a floor that survives a Redis restart. */
export const EPOCH_FILE = 'cluster-epoch.json';

export function readEpochFloor(runDir: string): number {
  try {
    const v = JSON.parse(readFileSync(join(runDir, EPOCH_FILE), 'utf8')) as { epoch?: unknown };
    return typeof v.epoch === 'number' && Number.isInteger(v.epoch) ? v.epoch : 0;
  } catch {
    return 0;
  }
}

function writeEpochFloor(runDir: string, epoch: number): void {
  const tmp = join(runDir, `${EPOCH_FILE}.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify({ epoch }));
  renameSync(tmp, join(runDir, EPOCH_FILE));
}

function epochOf(d: CheckpointData): number {
  const c = (d.meta.config as { cluster?: { epoch?: unknown } }).cluster;
  return typeof c?.epoch === 'number' ? c.epoch : 0;
}

/**
 * The checkpoint a new leader resumes from: the newest valid one, except files a deposed leader
 * may have written after losing its lease (an older epoch than the committed checkpoint's, at a
 * later step). Returns it with the corrupt ones skipped.
 */
export function pickCheckpoint(runDir: string, committed: { step: number; epoch: number } | null): { file: string; data: CheckpointData } | null {
  for (const { file, step } of listCheckpoints(runDir)) {
    let data: CheckpointData;
    try {
      data = readCheckpoint(file);
    } catch (e) {
      if (!isAppError(e)) throw e;
      continue;
    }
    if (committed && step > committed.step && epochOf(data) < committed.epoch) continue;
    return { file, data };
  }
  return null;
}

export class LeaderStack {
  readonly trainer: Trainer;
  readonly hub: WorkerHub;
  readonly bus = new EventBus();
  readonly evals: EvalPoint[] = [];
  private readonly evaluator: Evaluator | null;
  private lastCheckpoint: StatusSnapshot['checkpoint'] = null;
  private statusTimer: NodeJS.Timeout;
  private closed = false;
  resumedFrom: string | null = null;

  constructor(private readonly d: LeaderDeps, resume: { file: string; data: CheckpointData } | null) {
    const c = d.config;
    this.trainer = new Trainer(c, d.model, d.dataset);
    if (resume) {
      this.trainer.restore(resume.data, resume.file);
      this.resumedFrom = resume.file;
      this.lastCheckpoint = { step: resume.data.meta.step, file: resume.file, at: Date.parse(resume.data.meta.createdAt) || Date.now() };
    } else if (c.initFrom !== undefined) {
      const m = importForTraining(c.initFrom, d.model);
      this.trainer.loadInitialParams(m.params, c.initFrom);
    }
    writeEpochFloor(d.runDir, d.epoch);
    this.evaluator = c.evalEvery > 0 ? new Evaluator(d.model, d.dataset, c.evalSamples) : null;
    // The gateways are this process's own kind: trusted (they share Redis and the run secret) and
    // each already checks its workers' results (validation, replay, norms, re-computation). So
    // here: no re-computation, no share cap, no per-connection rate limit meant for volunteers (a
    // gateway sends one result per slice, as fast as steps go); a slice may be as large as the
    // step; float32 partials.
    const unitConfig: CoordinatorConfig = { ...c, verifyRate: 0, maxShare: 1, minWorkers: 1, rateLimit: Math.max(c.rateLimit, 1000), maxMicroBatch: Math.max(c.maxMicroBatch, c.globalBatch), compress: undefined };
    this.hub = new WorkerHub({ io: d.nsp, trainer: this.trainer, config: unitConfig, preset: c.preset, seqLen: d.seqLen, bus: this.bus, log: d.log.child({ role: 'leader' }), hooks: { afterStep: () => this.afterStep() }, stages: false });
    this.bus.on('step', (p) => {
      d.publish({ kind: 'step', p });
      this.publishStatus();
    });
    this.bus.on('eval', (e) => d.publish({ kind: 'eval', e }));
    this.bus.on('checkpoint', (cp) => d.publish({ kind: 'checkpoint', c: cp }));
    this.bus.on('log', (e) => {
      if (!['join', 'leave', 'dead', 'reject', 'kick'].includes(e.kind)) d.publish({ kind: 'log', e });
    });
    const said = resume ? `leader (epoch ${d.epoch}) resumed from ${resume.file} at step ${this.trainer.step}` : `leader (epoch ${d.epoch}) starts at step ${this.trainer.step} (no checkpoint)`;
    d.log.info({ epoch: d.epoch, step: this.trainer.step, file: resume?.file }, said);
    this.bus.logEntry({ level: 'info', kind: 'resume', message: said });
    this.statusTimer = setInterval(() => this.publishStatus(), 1_000);
    this.statusTimer.unref();
    this.publishStatus();
  }

  private async afterStep(): Promise<void> {
    const t = this.trainer;
    const done = t.step;
    if (this.evaluator && (done % this.d.config.evalEvery === 0 || t.finished)) {
      const r = await this.evaluator.run(t.params);
      const e: EvalPoint = { step: done - 1, loss: r.loss, accuracy: r.accuracy, t: Date.now(), tasks: r.tasks, samples: r.samples };
      this.evals.push(e);
      t.noteEval(r.loss, r.accuracy);
      const said = this.evaluator.describe(e.step, r);
      this.bus.emit('eval', e);
      this.bus.logEntry({ level: 'info', kind: 'eval', message: said.line });
    }
    const every = this.d.config.checkpointEvery;
    if ((every > 0 && done % every === 0) || t.finished) {
      try {
        this.checkpointNow(t.finished ? 'max-steps' : 'periodic');
      } catch (e) {
        this.d.log.error({ err: e }, 'checkpoint failed; the previous checkpoint stays valid');
        this.bus.logEntry({ level: 'error', kind: 'checkpoint', message: (e as Error).message });
      }
    }
  }

  /**
   * A checkpoint, fenced: written only while the lease surely holds, removed again when it was
   * lost during the write, then committed in Redis under the lease (FENCED_SET).
   */
  checkpointNow(reason: string): { step: number; file: string } {
    const d = this.d;
    const notLeader = (why: string) => new AppError('ERR_NOT_LEADER', `checkpoint: this process is no longer the leader (${why}); nothing written`, 409, 'the current leader writes checkpoints: see cluster.leader in GET /api/status');
    if (this.closed || !d.leading()) throw notLeader('lease not held');
    const t0 = Date.now();
    const { adminToken: _a, joinToken: _j, redis: _r, ...pub } = d.config;
    const data = this.trainer.snapshot({ preset: d.config.preset, config: { ...pub, cluster: { epoch: d.epoch, processId: d.me.id } } });
    const file = saveCheckpoint(d.runDir, data, d.config.keepCheckpoints);
    if (!d.leading()) {
      rmSync(file, { force: true });
      throw notLeader('lease lost while writing');
    }
    const step = data.meta.step;
    void d.store.fencedSet(d.token, d.store.keys.checkpoint, JSON.stringify({ file: basename(file), step, epoch: d.epoch })).then((ok) => {
      if (!ok) d.log.warn({ file }, 'checkpoint written but not committed: the lease was lost');
    }, () => {});
    this.lastCheckpoint = { step, file, at: Date.now() };
    d.log.info({ file, step, reason, ms: Date.now() - t0 }, 'checkpoint written');
    this.bus.emit('checkpoint', { step, file, ms: Date.now() - t0 });
    this.bus.logEntry({ level: 'info', kind: 'checkpoint', message: `checkpoint at step ${step} (${reason}): ${file}` });
    return { step, file };
  }

  snapshot(): LeaderSnapshot {
    const t = this.trainer;
    const last = t.history.at(-1);
    const ev = this.evals.at(-1);
    return {
      step: t.step, epoch: t.epoch, version: t.version, loss: t.lastLoss, lr: t.lr(), samplesTrained: t.samplesTrained, tokensTrained: t.tokensTrained,
      mode: this.d.config.mode, tokensPerSec: last?.tokensPerSec ?? 0, paused: this.hub.paused, finished: t.finished, checkpoint: this.lastCheckpoint,
      model: { preset: this.d.config.preset, params: t.paramCount, config: this.d.model },
      eval: ev ? { step: ev.step, loss: ev.loss, accuracy: ev.accuracy, tasks: ev.tasks, samples: ev.samples } : null,
      accounting: t.accounting(), globalBatch: this.d.config.globalBatch,
      leader: { id: this.d.me.id, epoch: this.d.epoch, url: this.d.me.url },
    };
  }

  private publishStatus(): void {
    if (this.closed || !this.d.leading()) return;
    void this.d.store.fencedSet(this.d.token, this.d.store.keys.status, JSON.stringify(this.snapshot()), 10 * this.d.config.leaderTtlMs).catch(() => {});
  }

  /** Stop leading: the gateways are disconnected (they abandon their slices), state is dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.statusTimer);
    this.hub.shutdown();
    this.d.nsp.removeAllListeners('connection');
    this.d.nsp.disconnectSockets(true);
    this.evaluator?.dispose();
    await this.hub.close();
  }
}
