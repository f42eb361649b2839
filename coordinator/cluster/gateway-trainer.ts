// The trainer of a gateway (--redis): what the ReplicaAssigner, Security and the Scheduler of a
// gateway process see instead of the real Trainer. The leader leases this process ONE slice of
// its step (a "unit lease": sample ids, params version); this trainer turns it into a local
// StepWork that the gateway's own ReplicaAssigner splits among its workers exactly as a single
// coordinator would, folds their accepted results into the streaming mean, and at the end of the
// slice (finishStep) produces ONE token-weighted partial result: the mean gradient over the
// slice's tokens, the token-weighted loss, tokens = their sum. The leader folds partials with the
// same streaming mean, so G gateways give the flat mean of K workers up to float rounding.
//
// No optimizer step happens here: parameters and version come from the leader (setParams).
// Workers' acknowledgements wait until the leader acknowledged the partial (ClusterPort holds
// them): a worker is only told its rows count once they are in the leader's step.

import type { StepTimings } from '../../shared/backend.ts';
import { buildMicroBatch } from '../../shared/data/index.ts';
import { AppError } from '../../shared/errors.ts';
import { l2Norm } from '../../shared/optim/index.ts';
import type { HistoryPoint } from '../../shared/protocol/dashboard.ts';
import type { ParamsMsg, RejectCode, ResultMsg, TaskMsg } from '../../shared/protocol/messages.ts';
import { StepWork, type Lease } from '../train/step-work.ts';
import { Trainer, type StepSummary } from '../train/trainer.ts';

/** The slice of a leader step this gateway holds. */
export interface UnitLease {
  taskId: string;
  step: number;
  version: number;
  ids: number[];
  tokens: number;
}

/** One partial per unit lease, for the leader: a ResultMsg of the whole slice. */
export type Partial = ResultMsg;

export class GatewayTrainer extends Trainer {
  private unit: UnitLease | null = null;
  private finishedFlag = false;
  private sliceLoss = 0;
  private lossOf = new Map<string, number>();
  private lastPartial: Float32Array | null = null;
  private readonly points: HistoryPoint[] = [];
  /** Where a finished slice goes (the uplink to the leader). */
  onPartial: (p: Partial, unit: UnitLease, leases: Lease[]) => void = () => {};

  /** Parameters of `version` from the leader (the array is kept: nobody writes to it). */
  setParams(p: ParamsMsg): void {
    if (p.params.length !== this.paramCount) throw new AppError('ERR_CLUSTER_PARAMS', `gateway: leader sent ${p.params.length} parameters, this model has ${this.paramCount}`, 500);
    this.params = p.params;
    this.version = p.version;
    this.step = p.step;
  }

  /**
   * A unit lease from the leader. Its rows must be the ones this process builds from the same ids
   * (same --data, --seq-len, --seed): otherwise the processes do not share one data set.
   * Returns why it cannot be taken, or null.
   */
  offer(t: TaskMsg): string | null {
    if (this.current || this.unit) return `already holding ${this.unit?.taskId ?? 'a slice'}`;
    if (t.version !== this.version) return `task at version ${t.version}, parameters held at ${this.version}`;
    const ids = Array.from(t.sampleIds);
    const b = buildMicroBatch(this.dataset, ids);
    if (b.B !== t.B || b.T !== t.T || !sameInts(b.inputs, t.inputs) || !sameInts(b.targets, t.targets) || !sameInts(b.mask, t.mask)) {
      return 'the leader\'s rows differ from this process\'s data for the same sample ids: start every process with the same --data, --seq-len and --seed';
    }
    this.unit = { taskId: t.taskId, step: t.step, version: t.version, ids, tokens: t.tokens };
    this.finishedFlag = false;
    return null;
  }

  /** The leader is gone or withdrew the slice: drop it (workers' answers for it become LATE). */
  abandon(): UnitLease | null {
    const u = this.unit;
    this.unit = null;
    this.current = null;
    return u;
  }

  get holding(): UnitLease | null {
    return this.unit;
  }

  /** The leader said max-steps is reached (its `wait finished`). */
  markFinished(v: boolean): void {
    this.finishedFlag = v;
  }

  override get finished(): boolean {
    return this.finishedFlag;
  }

  override get history(): readonly HistoryPoint[] {
    return this.points;
  }

  /** A step the leader finished (its event channel): the gateway's history for /api/history. */
  noteLeaderStep(p: HistoryPoint): void {
    // After a failover the new leader redoes the steps since its checkpoint: theirs replace ours.
    while (this.points.length && this.points[this.points.length - 1].step >= p.step) this.points.pop();
    this.points.push(p);
    if (this.points.length > 20_000) this.points.splice(0, this.points.length - 20_000);
  }

  /**
   * The run's history as a (new) leader has it (from its checkpoint on): replaces what this process
   * saw. `keepNewer`: steps this process heard of after the leader answered stay (a step that
   * a newer leader redoes replaces them as it comes: noteLeaderStep).
   */
  seedHistory(points: readonly HistoryPoint[], keepNewer = false): void {
    const last = points.at(-1)?.step ?? -1;
    const newer = keepNewer ? this.points.filter((p) => p.step > last) : [];
    this.points.splice(0, this.points.length, ...points.slice(-20_000), ...newer);
  }

  override get lastAggregate(): Float32Array | null {
    return this.lastPartial;
  }

  override startStep(now = Date.now()): StepWork | null {
    if (this.current) return this.current;
    const u = this.unit;
    if (!u || this.finishedFlag || u.version !== this.version) return null;
    // Task ids unique over the process's life: `<nonce>s<slice>.<step>.<n>`. Two slices of one step
    // (a re-leased one), or the same step again after a failover, must never share an id: a late
    // answer to the old one would be taken for the new one (other rows).
    this.current = new StepWork(`${this.nonce}s${++this.slices}`, u.step, u.version, 0, u.ids);
    this.beginAggregator(u.step);
    this.resetStepSums();
    this.startedAt = now;
    return this.current;
  }
  private startedAt = 0;
  private slices = 0;

  /** As the Trainer's, but a task of an earlier slice of this process is LATE (its slice is over). */
  override check(taskId: string, workerId: string): Lease | { code: RejectCode; message: string } {
    const r = super.check(taskId, workerId);
    if ('code' in r && r.code === 'UNKNOWN_TASK' && taskId.startsWith(this.nonce + 's')) {
      return { code: 'LATE', message: `task ${taskId} belongs to a slice that is already over` };
    }
    return r;
  }

  /** The Trainer's acceptance checks; the loss goes to this slice's sums (published per slice). */
  protected override addLoss(workerId: string, weighted: number): void {
    this.sliceLoss += weighted;
    this.lossOf.set(workerId, (this.lossOf.get(workerId) ?? 0) + weighted);
  }

  protected override resetStepSums(): void {
    this.sliceLoss = 0;
    this.lossOf.clear();
  }

  override discardWorker(workerId: string, units: readonly string[] = []): Lease[] {
    const w = this.current;
    const keys = new Set([workerId, ...units]);
    if (!w || ![...w.doneLeases.values()].some((l) => keys.has(l.workerId))) return [];
    // The streaming mean cannot subtract one worker: the slice's accumulation restarts.
    this.beginAggregator(w.step);
    this.resetStepSums();
    return w.reopen(() => true);
  }

  /** The slice is complete: one partial to the leader. No optimizer step here. */
  override finishStep(now = Date.now(), workers = 0): StepSummary {
    const w = this.current;
    const u = this.unit;
    if (!w || !w.done || !u) throw new AppError('ERR_STEP_NOT_DONE', `gateway: finishStep() with slice ${u?.taskId ?? '-'} incomplete (bug)`, 500);
    const grads = new Float32Array(this.paramCount);
    const tokens = this.finishAggregate(grads);
    const loss = tokens > 0 ? this.sliceLoss / tokens : 0;
    const gradNorm = l2Norm(grads);
    const leases = [...w.doneLeases.values()];
    this.current = null;
    this.unit = null;
    this.lastPartial = grads;
    const timings: StepTimings = { totalMs: Math.max(1, now - this.startedAt) };
    this.onPartial({ taskId: u.taskId, step: u.step, version: u.version, loss, tokens, grads, gradNorm, nonFinite: 0, timings }, u, leases);
    const stepMs = Math.max(1, now - this.startedAt);
    return { step: u.step, epoch: 0, loss, lr: 0, gradNorm, tokens, tokensPerSec: (tokens * 1000) / stepMs, stepMs, workers, t: now };
  }
}

function sameInts(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
