// What a worker was told about its own work, as events for an outside auditor (the chaos suite,
// tests): who it is (welcome), which rows each task held (the first tokens of every row: with
// self-describing data they name the sample), which results the coordinator acknowledged, and
// which acknowledged ones it later discarded. Counting samples from these, and not from the
// coordinator's own counters, lets a test catch a coordinator that loses or doubles samples.
// Listens on the client's socket beside its own handlers, so the client needs one line for it.

export type TraceEvent =
  | { ev: 'welcome'; workerId: string }
  | { ev: 'task'; taskId: string; step: number; heads: number[][] }
  /** A pipeline share's micro-batch reaching this worker as the first stage (its token rows). */
  | { ev: 'hop'; taskId: string; micro: number; heads: number[][] }
  | { ev: 'ack'; taskId: string; step: number }
  | { ev: 'discard'; step: number; taskIds: string[] };

/** Tokens kept from the start of each row: enough for a self-describing sample id. */
export const TRACE_HEAD = 8;

/** The trace event of a replica task (B rows of T tokens). */
export function taskTrace(t: { taskId: string; step: number; B: number; T: number; inputs: Int32Array }): TraceEvent {
  const heads: number[][] = [];
  for (let b = 0; b < t.B; b++) heads.push(Array.from(t.inputs.subarray(b * t.T, b * t.T + Math.min(TRACE_HEAD, t.T))));
  return { ev: 'task', taskId: t.taskId, step: t.step, heads };
}

/** The parts of a socket.io client socket the trace listens on. */
interface Listening {
  on(event: string, fn: (m: never) => void): unknown;
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/**
 * Traces what arrives on `socket` while `live()` (the client's current connection). Messages are
 * checked for the fields the trace needs and skipped otherwise (the client validates them fully).
 * A `discard` is also logged: the client has no other use for it.
 */
export function attachTrace(socket: Listening, live: () => boolean, trace: (e: TraceEvent) => void, log: (msg: string) => void): void {
  socket.on('welcome', (m: { workerId?: unknown }) => {
    if (live() && typeof m?.workerId === 'string') trace({ ev: 'welcome', workerId: m.workerId });
  });
  socket.on('task', (m: { taskId?: unknown; step?: unknown; B?: unknown; T?: unknown; inputs?: unknown }) => {
    if (!live() || typeof m?.taskId !== 'string' || !isInt(m.step) || !isInt(m.B) || !isInt(m.T) || !(m.inputs instanceof Int32Array)) return;
    if (m.inputs.length !== m.B * m.T) return;
    trace(taskTrace({ taskId: m.taskId, step: m.step, B: m.B, T: m.T, inputs: m.inputs }));
  });
  // --mode diloco: a round task holds H micro-batches of B rows (H * B rows traced).
  socket.on('round', (m: { taskId?: unknown; step?: unknown; H?: unknown; B?: unknown; T?: unknown; inputs?: unknown }) => {
    if (!live() || typeof m?.taskId !== 'string' || !isInt(m.step) || !isInt(m.H) || !isInt(m.B) || !isInt(m.T) || !(m.inputs instanceof Int32Array)) return;
    if (m.inputs.length !== m.H * m.B * m.T) return;
    trace(taskTrace({ taskId: m.taskId, step: m.step, B: m.H * m.B, T: m.T, inputs: m.inputs }));
  });
  // Pipeline stages: the first stage's forward hops carry the share's rows, one micro-batch each.
  socket.on('hop', (m: { taskId?: unknown; micro?: unknown; kind?: unknown; B?: unknown; T?: unknown; inputs?: unknown }) => {
    if (!live() || m?.kind !== 'fwd' || typeof m.taskId !== 'string' || !isInt(m.micro) || !isInt(m.B) || !isInt(m.T) || !(m.inputs instanceof Int32Array)) return;
    if (m.inputs.length !== m.B * m.T) return;
    const t = taskTrace({ taskId: m.taskId, step: 0, B: m.B, T: m.T, inputs: m.inputs });
    if (t.ev === 'task') trace({ ev: 'hop', taskId: m.taskId, micro: m.micro, heads: t.heads });
  });
  socket.on('ack', (m: { taskId?: unknown; step?: unknown }) => {
    if (live() && typeof m?.taskId === 'string' && isInt(m.step)) trace({ ev: 'ack', taskId: m.taskId, step: m.step });
  });
  socket.on('discard', (m: { step?: unknown; taskIds?: unknown; reason?: unknown }) => {
    if (!live() || !isInt(m?.step) || !Array.isArray(m.taskIds)) return;
    const taskIds = m.taskIds.filter((x): x is string => typeof x === 'string');
    trace({ ev: 'discard', step: m.step, taskIds });
    log(`coordinator discarded ${taskIds.length} acknowledged result(s) of step ${m.step}: ${String(m.reason ?? '').slice(0, 200)}`);
  });
}
