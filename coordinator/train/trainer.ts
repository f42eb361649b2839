// The training state machine of the coordinator, free of sockets and HTTP so it can be tested
// and reasoned about alone: parameters, AdamW, LR schedule, data cursor, exactly-once ledger,
// the current step's leases, streaming aggregation, history, checkpoint snapshot/restore.
//
// Step lifecycle: startStep() takes the next global batch from the epoch sampler -> leases are
// cut (StepWork) -> each accepted result is recorded in the coverage ledger and folded into the
// aggregator -> when every position is in, finishStep(): token-weighted mean, global-norm clip,
// AdamW at lrAt(step), version + 1.
// Why this file is long: the step lifecycle, result acceptance (shared with the cluster's
// GatewayTrainer through addLoss), ban discards and checkpoint snapshot/restore all work on the
// same private step state of one class; splitting it would expose that state.

import { randomBytes } from 'node:crypto';
import type { MicroBatch } from '../../shared/backend.ts';
import { buildMicroBatch, CoverageLedger, EpochSampler, type Dataset } from '../../shared/data/index.ts';
import { AppError } from '../../shared/errors.ts';
import { parameterCount, type ModelConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildParameterTable, type ParameterTable } from '../../shared/model/parameters.ts';
import { AdamW, clipGradNorm, l2Norm, lrAt, runSchedule, type LrSchedule } from '../../shared/optim/index.ts';
import type { HistoryPoint, EpochAccounting } from '../../shared/protocol/dashboard.ts';
import type { RejectCode, ResultMsg, TaskDpo } from '../../shared/protocol/messages.ts';
import type { GradientStager } from '../../shared/protocol/validate.ts';
import { Rng } from '../../shared/rng.ts';
import type { CheckpointData } from '../checkpoint/format.ts';
import { foldThreadCount, type CoordinatorConfig } from '../config.ts';
import { MeanAggregator, type Aggregator } from './aggregate.ts';
import { createAggregator } from './create-aggregator.ts';
import { StepWork, type Lease } from './step-work.ts';
import type { PreferenceTraining } from './preference-training.ts';

/** A lease's micro-batch; with --objective dpo its rows are pairs and `dpo` carries beta and the reference log-probs. */
export type LeaseBatch = MicroBatch & { dpo?: TaskDpo };

const HISTORY_MAX = 20_000;
const HISTORY_IN_CHECKPOINT = 2_000;

export interface StepSummary extends HistoryPoint {}

export class Trainer {
  readonly table: ParameterTable;
  readonly paramCount: number;
  params: Float32Array;
  readonly optimizer: AdamW;
  readonly schedule: LrSchedule;
  /** Parameter version: +1 per optimizer step (== step). */
  version = 0;
  /** Index of the next optimizer step to run. */
  step = 0;
  sampler: EpochSampler;
  ledger: CoverageLedger;
  rng: Rng;
  /** The step's gradient sum; replaced by an event-loop MeanAggregator if a fold thread fails. */
  aggregator: Aggregator;
  /** Steps redone because a fold thread failed (recoverFromFoldFailure). */
  private foldFailureCount = 0;
  /**
   * validateResult's `stage` for this run's results: the fold threads' staging slots, when the
   * aggregator has them (fold-threads.ts), so that the scan writes the copy the fold reads.
   */
  readonly stageGradient: GradientStager = (g) => this.aggregator.stage?.(g) ?? null;
  current: StepWork | null = null;
  /** Random per process: task ids of an earlier coordinator run are UNKNOWN_TASK, not LATE. */
  readonly nonce = randomBytes(4).toString('hex');
  /** Lease ids of the previous step (results arriving after it finished are LATE). */
  private previousStepIds = new Map<string, 'done' | 'late'>();
  // Counters: the trainer's own, changed only by its methods (read them through the getters).
  private historyPoints: HistoryPoint[] = [];
  private samples = 0;
  private tokensSeen = 0;
  private doubledSamples = 0;
  private refusedResults = 0;
  private leasedTotal = 0;
  private releasedTotal = 0;
  private stepStartedAt = 0;
  private lossSum = 0;
  /** loss x tokens per worker in the running step (to discard a banned worker's share). */
  private lossByWorker = new Map<string, number>();
  private gradBuf: Float32Array;
  /** --objective dpo: the pairs, their reference log-probs and beta (preference-training.ts). */
  private preference: PreferenceTraining | null = null;

  constructor(
    readonly config: CoordinatorConfig,
    readonly model: ModelConfig,
    readonly dataset: Dataset,
  ) {
    this.table = buildParameterTable(model);
    this.paramCount = parameterCount(model);
    this.params = initParameters(model, config.seed);
    this.optimizer = new AdamW(this.table, {
      beta1: config.beta1, beta2: config.beta2, eps: config.eps, weightDecay: config.weightDecay,
    });
    const total = config.decaySteps || config.maxSteps || 10_000;
    this.schedule = runSchedule(config, total);
    this.sampler = new EpochSampler({ seed: config.seed, size: dataset.size });
    this.ledger = new CoverageLedger(dataset.size);
    this.rng = new Rng(config.seed ^ 0x5eed);
    this.aggregator = createAggregator(config.aggregate, this.paramCount, { normLimit: config.normLimit }, config.mode === 'sync' ? foldThreadCount(config, this.paramCount) : 0);
    this.gradBuf = new Float32Array(this.paramCount);
  }

  /** Finished steps, oldest first (the last HISTORY_MAX). Read-only: noteEval() annotates. */
  get history(): readonly HistoryPoint[] {
    return this.historyPoints;
  }
  get samplesTrained(): number {
    return this.samples;
  }
  get tokensTrained(): number {
    return this.tokensSeen;
  }
  /** Samples the ledger refused as trained twice in an epoch (a bug: must stay 0). */
  get doubled(): number {
    return this.doubledSamples;
  }
  /** Worker results refused, for any reason (countRejectedResult()). */
  get rejectedResults(): number {
    return this.refusedResults;
  }

  /** A worker's result was refused (by validation, the lease check, security or accept()). */
  countRejectedResult(): void {
    this.refusedResults++;
  }

  /** Attach a held-out evaluation to the last finished step's history point. */
  noteEval(loss: number, accuracy: number | null): void {
    const last = this.historyPoints.at(-1);
    if (!last) return;
    last.evalLoss = loss;
    last.evalAccuracy = accuracy;
  }

  get epoch(): number {
    return this.current?.epoch ?? this.sampler.epoch;
  }
  get finished(): boolean {
    return this.config.maxSteps > 0 && this.step >= this.config.maxSteps;
  }
  get lastLoss(): number | null {
    return this.history.length ? this.history[this.history.length - 1].loss : null;
  }
  lr(step = this.step): number {
    return lrAt(step, this.schedule);
  }

  /** Begin the next step (no-op if one is running); null when max-steps is reached. */
  startStep(now = Date.now()): StepWork | null {
    if (this.current) return this.current;
    if (this.finished) return null;
    const shard = this.sampler.next(this.config.globalBatch);
    if (shard.epoch > 0) this.ledger.forgetBefore(shard.epoch - 1);
    this.current = new StepWork(this.nonce, this.step, this.version, shard.epoch, shard.ids);
    this.beginAggregator(this.step);
    this.lossSum = 0;
    this.lossByWorker.clear();
    this.stepStartedAt = now;
    return this.current;
  }

  /** --objective dpo: leases become preference pairs (call before the first step). */
  usePreferences(p: PreferenceTraining): void {
    this.preference = p;
  }

  /** --objective dpo: the pairs, reference log-probs and beta; null for the LM objective. */
  get preferences(): PreferenceTraining | null {
    return this.preference;
  }

  get objective(): 'lm' | 'dpo' {
    return this.preference ? 'dpo' : 'lm';
  }

  /**
   * The micro-batch of a lease, and the count results are weighted by: masked-in tokens, or with
   * --objective dpo the lease's pairs (two rows each, plus beta and the reference log-probs).
   */
  batchOf(l: Lease): { batch: LeaseBatch; tokens: number } {
    if (this.preference) return this.preference.batchOf(l.ids);
    const batch = buildMicroBatch(this.dataset, l.ids);
    let tokens = 0;
    for (let i = 0; i < batch.mask.length; i++) tokens += batch.mask[i];
    return { batch, tokens };
  }

  /** Classify a result's task id for `workerId`: the live lease, or why it is refused. */
  check(taskId: string, workerId: string): Lease | { code: RejectCode; message: string } {
    if (this.current) {
      const r = this.current.check(taskId, workerId);
      if (!('code' in r) || r.code !== 'UNKNOWN_TASK') return r;
    }
    const prev = this.previousStepIds.get(taskId);
    if (prev === 'done') return { code: 'DUPLICATE', message: `task ${taskId} was already completed` };
    if (prev === 'late' || taskId.startsWith(this.nonce + '.')) {
      return { code: 'LATE', message: `task ${taskId} belongs to a step that is already finished` };
    }
    return { code: 'UNKNOWN_TASK', message: `task ${taskId} was never issued by this coordinator` };
  }

  /**
   * Fold an accepted result in. `expectedTokens` is the lease's token count. Validates what needs
   * the lease (step, version, tokens) first; on any refusal nothing changes. The aggregate is
   * streamed: the gradient is folded in here and not kept.
   */
  accept(l: Lease, r: ResultMsg, expectedTokens: number, workerId: string): { ok: true } | { ok: false; code: RejectCode; message: string } {
    const w = this.current;
    if (!w || l.step !== w.step) return { ok: false, code: 'LATE', message: `task ${l.id}: its step is over` };
    if (r.step !== l.step) return { ok: false, code: 'WRONG_STEP', message: `result.step ${r.step} != task step ${l.step}` };
    if (r.version !== l.version) return { ok: false, code: 'STALE_VERSION', message: `result.version ${r.version} != task version ${l.version}` };
    if (r.tokens !== expectedTokens) return { ok: false, code: 'TOKENS_MISMATCH', message: `result.tokens ${r.tokens} != ${expectedTokens} masked-in positions of the task` };
    w.accept(l);
    this.aggregator.add(r.grads, r.tokens, workerId);
    if (this.aggregator.failed) {
      // Acknowledged like any accepted result; the step's work (this one's included) is redone.
      this.recoverFromFoldFailure();
      return { ok: true };
    }
    this.addLoss(workerId, r.loss * r.tokens);
    return { ok: true };
  }

  /** aggregator.begin(); a failed fold pool is replaced first (nothing of this step is in it yet). */
  protected beginAggregator(step: number): void {
    try {
      if (!this.aggregator.failed) return this.aggregator.begin(step);
    } catch (e) {
      if ((e as AppError).code !== 'ERR_FOLD_THREAD') throw e;
    }
    this.replaceFailedAggregator();
    this.aggregator.begin(step);
  }

  private replaceFailedAggregator(): void {
    const failed = this.aggregator as Aggregator & { failureMessage?: string };
    void failed.close?.();
    this.foldFailureCount++;
    this.aggregator = new MeanAggregator(this.paramCount);
    this.onFoldFailure(failed.failureMessage ?? 'a fold thread failed');
  }

  /** Called once per failed fold pool (the coordinator logs it). */
  onFoldFailure: (message: string) => void = () => {};

  /** Steps whose accumulation restarted because a fold thread failed. */
  get foldFailures(): number {
    return this.foldFailureCount;
  }

  /**
   * A fold thread failed (fold-threads.ts): the step's sum is incomplete. From now on the mean is
   * folded in the event loop, and every accepted lease of the step is reopened and redone (as a
   * ban does under the streaming mean: nothing lost or doubled). Returns the leases reopened.
   */
  protected recoverFromFoldFailure(): Lease[] {
    this.replaceFailedAggregator();
    const w = this.current;
    this.aggregator.begin(w?.step ?? this.step);
    this.resetStepSums();
    return w ? w.reopen(() => true) : [];
  }

  /** The running step's loss sums back to zero (its accumulation restarts). */
  protected resetStepSums(): void {
    this.lossSum = 0;
    this.lossByWorker.clear();
  }

  /** Stop the aggregator's threads, if it has any. */
  async close(): Promise<void> {
    await this.aggregator.close?.();
  }

  /** Adds an accepted result's token-weighted loss to the step's sums (a gateway keeps its slice's own). */
  protected addLoss(workerId: string, weighted: number): void {
    this.lossSum += weighted;
    this.lossByWorker.set(workerId, (this.lossByWorker.get(workerId) ?? 0) + weighted);
  }

  /**
   * Discard a banned worker's results already folded into the running step (and those under `units`:
   * its pipelines' ids) and re-lease their samples (coordinator/security). Robust aggregators drop exactly
   * those vectors; the streaming mean cannot subtract one worker, so it restarts the step's accumulation
   * and re-leases every accepted lease (redone: nothing lost or doubled). Returns the leases reopened.
   */
  discardWorker(workerId: string, units: readonly string[] = []): Lease[] {
    const w = this.current;
    const keys = new Set([workerId, ...units]);
    if (!w || ![...w.doneLeases.values()].some((l) => keys.has(l.workerId))) return [];
    if (this.aggregator.remove) {
      for (const k of keys) this.aggregator.remove(k);
      for (const k of keys) this.lossSum -= this.lossByWorker.get(k) ?? 0;
      for (const k of keys) this.lossByWorker.delete(k);
      return w.reopen((l) => keys.has(l.workerId));
    }
    this.beginAggregator(w.step);
    this.resetStepSums();
    return w.reopen(() => true);
  }

  /**
   * aggregator.finish(out). A fold thread that failed: the step's accepted work is reopened and
   * ERR_FOLD_THREAD thrown (the scheduler logs it and leases the work again).
   */
  protected finishAggregate(out: Float32Array): number {
    try {
      if (!this.aggregator.failed) return this.aggregator.finish(out);
    } catch (e) {
      if ((e as AppError).code !== 'ERR_FOLD_THREAD') throw e;
    }
    const reopened = this.recoverFromFoldFailure();
    throw new AppError('ERR_FOLD_THREAD', `trainer: a fold thread failed at the end of step ${this.step}; its ${reopened.length} accepted leases are redone with the mean folded in the event loop`, 500);
  }

  /** Aggregate, clip, AdamW, version + 1. Call when current.done. */
  finishStep(now = Date.now(), workers = 0): StepSummary {
    const w = this.current;
    if (!w || !w.done) throw new AppError('ERR_STEP_NOT_DONE', `trainer: finishStep() with step ${this.step} incomplete (bug)`, 500);
    const tokens = this.finishAggregate(this.gradBuf);
    const gradNorm = this.config.gradClip > 0 ? clipGradNorm(this.gradBuf, this.config.gradClip) : l2Norm(this.gradBuf);
    // The ledger holds only finished steps (so a checkpoint taken mid-step is consistent). StepWork
    // already made this step's positions disjoint; the ledger proves no sample is trained twice
    // across steps of the epoch. A refusal here is a bug, counted as `doubled` (must stay 0).
    try {
      this.ledger.record(w.epoch, w.ids);
      this.samples += w.size;
    } catch {
      this.doubledSamples += w.size;
    }
    const lr = this.lr(w.step);
    if (tokens > 0) this.optimizer.step(this.params, this.gradBuf, lr);
    this.tokensSeen += tokens;
    this.leasedTotal += w.leasedCount;
    this.releasedTotal += w.releasedCount;
    const stepMs = Math.max(1, now - this.stepStartedAt);
    const point: HistoryPoint = {
      step: w.step,
      epoch: w.epoch,
      loss: tokens > 0 ? this.lossSum / tokens : 0,
      lr,
      gradNorm,
      tokens,
      tokensPerSec: (tokens * 1000) / stepMs,
      stepMs,
      workers,
      t: now,
    };
    this.historyPoints.push(point);
    if (this.historyPoints.length > HISTORY_MAX) this.historyPoints.splice(0, this.historyPoints.length - HISTORY_MAX);
    this.previousStepIds = new Map();
    for (const [id, s] of w.retired) this.previousStepIds.set(id, s === 'done' ? 'done' : 'late');
    for (const id of w.active.keys()) this.previousStepIds.set(id, 'late');
    this.step++;
    this.version++;
    this.current = null;
    return point;
  }

  /**
   * --mode diloco (round-trainer.ts): an outer step was applied to `params`. Records the round's
   * trained rows in the exactly-once ledger (a refusal is counted as `doubled`), the counters and
   * a history point; step + 1, version + 1. The caller changed `params` already.
   */
  recordOuterStep(r: { rows: Map<number, number[]>; tokens: number; loss: number; lr: number; norm: number; startedAt: number; now: number; workers: number; leased: number; released: number }): StepSummary {
    for (const [epoch, ids] of r.rows) {
      if (epoch > 0) this.ledger.forgetBefore(epoch - 1);
      try {
        this.ledger.record(epoch, ids);
        this.samples += ids.length;
      } catch {
        this.doubledSamples += ids.length;
      }
    }
    this.tokensSeen += r.tokens;
    this.leasedTotal += r.leased;
    this.releasedTotal += r.released;
    const stepMs = Math.max(1, r.now - r.startedAt);
    const point: HistoryPoint = {
      step: this.step, epoch: this.sampler.epoch, loss: r.loss, lr: r.lr, gradNorm: r.norm, tokens: r.tokens,
      tokensPerSec: (r.tokens * 1000) / stepMs, stepMs, workers: r.workers, t: r.now,
    };
    this.historyPoints.push(point);
    if (this.historyPoints.length > HISTORY_MAX) this.historyPoints.splice(0, this.historyPoints.length - HISTORY_MAX);
    this.step++;
    this.version++;
    return point;
  }

  /** The last finished step's aggregate gradient (after clipping); null before the first step. */
  get lastAggregate(): Float32Array | null {
    return this.step > 0 && this.historyPoints.length ? this.gradBuf : null;
  }

  accounting(): EpochAccounting {
    const e = this.epoch;
    return {
      epoch: e,
      epochSize: this.dataset.size,
      trained: this.ledger.trained(e),
      doubled: this.doubledSamples,
      leased: this.leasedTotal + (this.current?.leasedCount ?? 0),
      released: this.releasedTotal + (this.current?.releasedCount ?? 0),
      rejectedResults: this.refusedResults,
    };
  }

  /**
   * Checkpoint contents at the last step boundary. A step in progress is NOT saved: the cursor is
   * rewound to its start, so on resume its samples are leased again; nothing is lost or doubled.
   */
  snapshot(meta: { preset: string; config: Record<string, unknown> }): CheckpointData {
    // The cursor before the running step's shard, so a resumed run re-does that step's samples.
    const cursor = this.sampler.cursor();
    if (this.current) {
      cursor.epoch = this.current.epoch;
      cursor.position = cursor.position - this.current.size;
      if (cursor.position < 0) cursor.position = 0;
    }
    const ledger = this.ledger.toJSON(); // only finished steps are in the ledger
    return {
      meta: {
        step: this.step,
        version: this.version,
        epoch: cursor.epoch,
        preset: meta.preset,
        model: this.model,
        paramCount: this.paramCount,
        cursor,
        ledger,
        dataset: { name: this.dataset.name, fingerprint: this.dataset.fingerprint, size: this.dataset.size },
        rngState: this.rng.state(),
        optimizerStep: this.optimizer.state.step,
        samplesTrained: this.samples,
        tokensTrained: this.tokensSeen,
        config: meta.config,
        history: this.historyPoints.slice(-HISTORY_IN_CHECKPOINT),
        createdAt: new Date().toISOString(),
      },
      params: this.params,
      m: this.optimizer.state.m,
      v: this.optimizer.state.v,
    };
  }

  /**
   * Start from given weights (`--init-from`, a fine-tune): replaces the seeded init before the
   * first step. An export has no optimizer state or data position, so those stay fresh.
   */
  loadInitialParams(params: Float32Array, where: string): void {
    if (params.length !== this.paramCount) {
      throw new AppError('ERR_IMPORT_SHAPE', `initial parameters from ${where}: ${params.length} values, this model has ${this.paramCount}`, 400,
        'the export must be of the --preset model');
    }
    if (this.step !== 0 || this.current) {
      throw new AppError('ERR_INIT_AFTER_START', `initial parameters from ${where}: training already started (step ${this.step})`, 500,
        'load initial weights before the first step');
    }
    this.params = params;
  }

  /** Continue from a checkpoint (checks it belongs to this model and dataset). */
  restore(d: CheckpointData, where: string): void {
    const m = d.meta;
    const same = (a: ModelConfig, b: ModelConfig) => (Object.keys(a) as Array<keyof ModelConfig>).every((k) => a[k] === b[k]);
    if (!same(m.model, this.model) || m.paramCount !== this.paramCount) {
      throw new AppError('ERR_CHECKPOINT_MISMATCH', `checkpoint ${where} is for model ${JSON.stringify(m.model)}, this run uses ${JSON.stringify(this.model)}`, 400,
        'start with the same --preset, or use another --run-dir');
    }
    if (m.dataset.fingerprint !== this.dataset.fingerprint) {
      throw new AppError('ERR_CHECKPOINT_MISMATCH', `checkpoint ${where} was trained on dataset ${m.dataset.name} (${m.dataset.fingerprint}), this run has ${this.dataset.name} (${this.dataset.fingerprint})`, 400,
        'start with the same --data, --seq-len and --seed, or use another --run-dir');
    }
    this.sampler = EpochSampler.restore(m.cursor, this.dataset.size);
    this.ledger = CoverageLedger.fromJSON(m.ledger);
    this.params = new Float32Array(d.params);
    this.optimizer.loadState({ m: d.m, v: d.v, step: m.optimizerStep });
    this.rng = new Rng(m.rngState);
    this.step = m.step;
    this.version = m.version;
    this.samples = m.samplesTrained;
    this.tokensSeen = m.tokensTrained;
    this.historyPoints = m.history ?? [];
    this.current = null;
  }
}
