// Slicing a task's rows into micro-batches (compute-step.ts, compute-preference.ts).

import type { MicroBatch } from '../../shared/backend.ts';
import type { TaskMsg } from '../../shared/protocol/messages.ts';

/** Rows [b0, b0+rows) of a task as a micro-batch of `padTo` rows (extra rows masked out). */
export function rowsOf(task: TaskMsg, b0: number, rows: number, padTo: number): MicroBatch {
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
