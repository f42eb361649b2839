// The replica role's compute step, pure: a task in, its gradient out, on whatever backend it is
// given. No socket, no statistics, no faults (those wrap it: fault-wrappers.ts). Also the sizing
// rule for its micro-batches and the warm-up batch that compiles a fixed-shape engine.

import type { TrainingBackend, GradientResult, MicroBatch } from '../../shared/backend.ts';
import { l2Norm } from '../../shared/optim/clip.ts';
import { DEFAULT_HEARTBEAT_MS, type TaskMsg, type WirePlan } from '../../shared/protocol/messages.ts';
import { computePreferenceTask } from './compute-preference.ts';
import { rowsOf } from './task-rows.ts';

/** A task's gradient from a backend, as micro-batches of at most `mb` rows (computeTask's signature). */
export type ComputeStep = (backend: TrainingBackend, task: TaskMsg, mb: number, fixedShape?: boolean) => Promise<GradientResult>;

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
  if (task.dpo) return computePreferenceTask(backend, task, mb, fixedShape);
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
  return { loss: tokens > 0 ? lossSum / tokens : 0, tokens, grads, gradNorm: l2Norm(grads), nonFinite, timings: { totalMs } };
}

/** Longest compute slice on a backend that runs on the loop's own thread, ms (also <= heartbeat / 2). */
export const SLICE_MS = 1_000;

/**
 * Rows per micro-batch for a task. A fixed-shape engine takes exactly the plan's size (padded). A
 * backend that computes on the loop's own thread (CPU) gets slices of at most min(SLICE_MS,
 * heartbeat / 2) of measured compute, so that heartbeats and socket.io pongs get out between
 * slices (a 20 s synchronous task would get us declared dead).
 */
export function microBatchRows(plan: WirePlan, task: TaskMsg, fixed: boolean, heartbeatMs: number, msPerRow: number): number {
  let mb = plan.microBatch > 0 ? (fixed ? plan.microBatch : Math.min(plan.microBatch, task.B)) : task.B;
  if (!fixed) {
    const sliceMs = Math.min(SLICE_MS, (heartbeatMs > 0 ? heartbeatMs : DEFAULT_HEARTBEAT_MS) / 2);
    mb = Math.min(mb, msPerRow > 0 ? Math.max(1, Math.floor(sliceMs / msPerRow)) : 1);
  }
  return mb;
}

/** A throwaway micro-batch of the plan's shape, to compile the engine's kernels before taking work. */
export function warmupBatch(B: number, T: number): MicroBatch {
  const mask = new Uint8Array(B * T);
  mask[0] = 1;
  return { B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), mask };
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}
