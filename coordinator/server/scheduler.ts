// Decides who does what: the part of work assignment every worker role shares. Owns the pause flag
// and the step lifecycle (advance: finish the step, run the afterStep hooks, go on); gates
// assignment while paused or finished (telling workers why); hands each connected worker's role to
// the WorkAssigner registered for it (assigner.ts). Workers whose role has no assigner get no work
// (their plan already told them why). Results are routed to the assigner of the sender's role.

import type { Logger } from 'pino';
import type { WaitMsg } from '../../shared/protocol/messages.ts';
import type { CoordinatorConfig } from '../config.ts';
import type { StepSummary, Trainer } from '../train/trainer.ts';
import type { AssignerHost, Reject, WorkAssigner, WorkerPort } from './assigner.ts';
import type { EventBus } from './events.ts';
import type { WorkerRegistry, WorkerView } from './workers.ts';

export interface StepHooks {
  /** Called after each optimizer step (eval, checkpoint); training resumes when it resolves. */
  afterStep(step: number): Promise<void>;
}

export class Scheduler implements AssignerHost {
  private readonly assigners = new Map<WorkerView['plan']['role'], WorkAssigner>();
  private pausedFlag = false;
  /** True while afterStep hooks run between steps. */
  private advancing = false;

  constructor(
    private readonly trainer: Trainer,
    private readonly cfg: CoordinatorConfig,
    private readonly workers: WorkerRegistry,
    private readonly port: WorkerPort,
    private readonly bus: EventBus,
    private readonly log: Logger,
    private readonly hooks: StepHooks,
  ) {}

  /** Work for workers of `a.role` comes from `a` from now on. */
  register(a: WorkAssigner): void {
    this.assigners.set(a.role, a);
  }

  get paused(): boolean {
    return this.pausedFlag;
  }

  /** Operator pause: no new leases; idle workers are told they are paused. */
  pause(): void {
    this.pausedFlag = true;
    this.bus.logEntry({ level: 'info', kind: 'admin', message: 'training paused by admin' });
    this.schedule();
  }

  /** Operator resume: every worker may be told its state again, then work is handed out. */
  resume(): void {
    this.pausedFlag = false;
    this.workers.clearWaitCodes();
    this.bus.logEntry({ level: 'info', kind: 'admin', message: 'training resumed by admin' });
    this.schedule();
  }

  /** Hand work to every idle live worker whose role has an assigner. */
  schedule(): void {
    if (this.advancing) return;
    const now = Date.now();
    for (const [role, assigner] of this.assigners) {
      const live = this.workers.withRole(role);
      if (this.pausedFlag) {
        for (const w of live) if (!w.lease) this.wait(w, 'paused', 'training is paused by the operator');
        continue;
      }
      if (this.trainer.finished) {
        for (const w of live) this.wait(w, 'finished', `max steps (${this.cfg.maxSteps}) reached`);
        continue;
      }
      assigner.assign(live, now);
    }
  }

  /** A result from `w`: to the assigner of its role (a worker of another role holds no lease; the replica pipeline refuses it with its own codes). */
  onResult(w: WorkerView, raw: unknown, reject: Reject): void {
    const a = this.assigners.get(w.plan.role) ?? this.assigners.get('replica');
    a?.onResult(w, raw, reject);
  }

  /** `workerId` is gone: every assigner takes its outstanding work back. Returns leases released. */
  release(workerId: string): number {
    let n = 0;
    for (const a of this.assigners.values()) n += a.release(workerId);
    return n;
  }

  /** Keys besides its own id under which `workerId`'s work of the running step was accepted (assigner.ts unitsOf). */
  unitsOf(workerId: string): string[] {
    return [...this.assigners.values()].flatMap((a) => a.unitsOf?.(workerId) ?? []);
  }

  /** Who was acknowledged for the accepted task `taskId` of unit `key` (a replica: the key itself). */
  ackedFor(taskId: string, key: string): string[] {
    for (const a of this.assigners.values()) {
      const ids = a.ackedFor?.(taskId);
      if (ids) return ids;
    }
    return [key];
  }

  /** Monitor tick: expired work goes back to the pool. */
  expire(now: number): void {
    for (const a of this.assigners.values()) a.expire(now);
  }

  wait(w: WorkerView, code: WaitMsg['code'], reason: string): void {
    if (!this.workers.markWaiting(w, code)) return;
    this.port.send(w, 'wait', { code, reason });
    this.workers.publish(w);
  }

  advance(finish?: () => StepSummary): void {
    void this.advanceStep(finish);
  }

  private async advanceStep(finish?: () => StepSummary): Promise<void> {
    if (this.advancing) return;
    this.advancing = true;
    try {
      const point = finish ? finish() : this.trainer.finishStep(Date.now(), this.workers.replicas().length);
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
}
