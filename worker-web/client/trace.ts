// What a worker was told about its own work, as events for an outside auditor (the chaos suite,
// tests): who it is (welcome), which rows each task held (the first tokens of every row: with
// self-describing data they name the sample), which results the coordinator acknowledged, and
// which acknowledged ones it later discarded. Counting samples from these, and not from the
// coordinator's own counters, lets a test catch a coordinator that loses or doubles samples.

export type TraceEvent =
  | { ev: 'welcome'; workerId: string }
  | { ev: 'task'; taskId: string; step: number; heads: number[][] }
  | { ev: 'ack'; taskId: string; step: number }
  | { ev: 'discard'; step: number; taskIds: string[] };

/** Tokens kept from the start of each row: enough for a self-describing sample id. */
export const TRACE_HEAD = 8;

/** The trace event of a validated task: every row of its inputs (B rows of T tokens; H x B for a round). */
export function taskTrace(t: { taskId: string; step: number; T: number; inputs: Int32Array }): TraceEvent {
  const heads: number[][] = [];
  for (let b = 0; b < t.inputs.length / t.T; b++) heads.push(Array.from(t.inputs.subarray(b * t.T, b * t.T + Math.min(TRACE_HEAD, t.T))));
  return { ev: 'task', taskId: t.taskId, step: t.step, heads };
}
