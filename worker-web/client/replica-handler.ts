// The replica role: the whole model on this worker; each `task` is a batch whose gradient goes
// back as a `result`. Checks the lease and the parameter version, runs the compute step (split
// into micro-batches sized by compute-step.ts), sends the result, counts it.

import { encodeHalf } from '../../shared/diloco/fp16.ts';
import type { ResultMsg, TaskMsg, WelcomeMsg, WirePlan } from '../../shared/protocol/messages.ts';
import { validateTask } from '../../shared/protocol/validate.ts';
import { now } from './clock.ts';
import { microBatchRows, type ComputeStep } from './compute-step.ts';
import type { WarmUpShape } from './engine-session.ts';
import type { Sender } from './sender.ts';
import type { TaskContext, TaskHandler } from './task-handler.ts';

export interface ReplicaHandlerParts {
  /** The compute step (computeTask, possibly wrapped by a gradient fault). */
  compute: ComputeStep;
  /** Where results go (honestSender, possibly wrapped). */
  send: Sender;
  /** The task as this worker computes it (identity, or the stale fault's held version). */
  taskView: (task: TaskMsg) => TaskMsg;
}

export class ReplicaHandler implements TaskHandler<TaskMsg> {
  readonly role = 'replica' as const;
  readonly event = 'task' as const;
  /** Measured compute time per sequence row, ms (sizes the CPU backend's time slices). */
  private msPerRow = 0;

  constructor(private readonly parts: ReplicaHandlerParts) {}

  validate(raw: unknown, welcome: WelcomeMsg) {
    return validateTask(raw, welcome.model);
  }

  warmUpShape(plan: WirePlan): WarmUpShape | undefined {
    return plan.microBatch > 0 ? { B: plan.microBatch, T: plan.seqLen } : undefined;
  }

  async run(received: TaskMsg, ctx: TaskContext): Promise<void> {
    const { session, welcome: w, stats } = ctx;
    const backend = session.backend;
    if (!backend) throw new Error(`task ${received.taskId}: no engine (device lost?), skipped`);
    if (now() - ctx.receivedAt > received.leaseMs) {
      ctx.log('warn', `task ${received.taskId}: lease expired before it could start, skipped`);
      return;
    }
    const task = this.parts.taskView(received);
    if (task.version !== session.paramsVersion) {
      throw new Error(`task ${task.taskId}: needs parameter version ${task.version}, this worker holds ${session.paramsVersion}; skipped`);
    }
    await session.uploadIfStale();
    stats.update({ state: 'computing', step: task.step, detail: `task ${task.taskId} (step ${task.step})` });
    const fixed = session.fixedShape && w.plan.microBatch > 0;
    const mb = microBatchRows(w.plan, task, fixed, w.heartbeatMs, this.msPerRow);
    const t0 = now();
    const r = await this.parts.compute(backend, task, mb, fixed);
    const wall = now() - t0;
    const perRow = wall / task.B;
    this.msPerRow = this.msPerRow > 0 ? 0.5 * this.msPerRow + 0.5 * perRow : perRow;
    if (!ctx.channel.live()) return; // left meanwhile: the lease is already returned
    const result: ResultMsg = {
      taskId: task.taskId,
      step: task.step,
      version: task.version,
      loss: r.loss,
      tokens: r.tokens,
      grads: r.grads,
      gradNorm: r.gradNorm,
      nonFinite: r.nonFinite,
      timings: r.timings,
    };
    // --compress fp16 (the task asks): the gradient goes as IEEE binary16, half the bytes.
    const payload = task.compress === 'fp16' ? packHalf(result) : result;
    if (!(await this.parts.send({ event: 'result', payload }, ctx.channel))) return;
    const tokensPerSec = stats.taskSent(r.tokens, r.timings.totalMs, wall);
    stats.update({
      state: 'idle',
      lastLoss: r.loss,
      tokensPerSec,
      detail: `task ${task.taskId} sent (loss ${r.loss.toFixed(4)}, ${r.tokens} tokens, ${wall.toFixed(0)} ms)`,
    });
    ctx.log('debug', `step ${task.step} task ${task.taskId}: loss ${r.loss.toFixed(4)} tokens ${r.tokens} norm ${r.gradNorm.toExponential(3)} ${wall.toFixed(0)} ms`);
  }
}

/** The result with `grads16` (binary16, round to nearest even) in place of `grads` (validateResult decodes it). */
export function packHalf(r: ResultMsg): ResultMsg {
  const { grads, ...rest } = r;
  return { ...rest, grads16: encodeHalf(grads) } as unknown as ResultMsg;
}
