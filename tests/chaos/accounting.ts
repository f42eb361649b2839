// Independent accounting of the chaos suite: which samples entered training, counted from what
// the WORKERS were acknowledged for (their --trace files), decoded on the test side from the
// self-describing rows, never from the coordinator's counters. Those counters (samplesTrained,
// the ledger's doubled count) are compared with this count afterwards and must agree: a
// coordinator bug that drops or doubles a sample shows here even if its own books look clean.
//
// What counts: an acknowledged task, minus the ones the coordinator later discarded (`discard`,
// after a ban restarted the step's accumulation), whose step survived: a coordinator killed with
// kill -9 resumes from its newest checkpoint at step r, so what it acknowledged for steps >= r is
// redone by the next incarnation and does not count. Which incarnation acknowledged a task is
// known from the worker's welcome before it (each restart needs a new welcome).

import { writeFileSync } from 'node:fs';
import { Rng } from '../../shared/rng.ts';

/** One line of a worker's --trace file (worker-web/client/trace.ts, plus the time it was written). */
export type TraceLine =
  | { t: number; ev: 'welcome'; workerId: string }
  | { t: number; ev: 'task'; taskId: string; step: number; heads: number[][] }
  | { t: number; ev: 'ack'; taskId: string; step: number }
  | { t: number; ev: 'discard'; step: number; taskIds: string[] };

export interface Restart {
  /** When the new coordinator process was started (after the old one died). */
  startedAt: number;
  /** The step it resumed at (its newest valid checkpoint). */
  resumedStep: number;
}

export interface IndependentCount {
  /** Distinct samples that entered training (net of discards and rolled-back steps). */
  trained: number;
  /** Expected - trained. */
  lost: number;
  /** Extra entries of samples counted more than once. */
  doubled: number;
  /** Acknowledged rows whose tokens did not decode to a sample id (must be 0). */
  undecodable: number;
  /** Steps whose sample count differs from the global batch: "step: n". */
  badSteps: string[];
  /** Per trace (same order): samples of each task id that entered training. */
  folded: Array<Map<string, number>>;
}

/** Sample ids are written into each prompt as "#NNNN " (byte-level tokens = bytes). */
export function decodeSampleId(head: number[]): number | null {
  const m = /^#(\d{4}) /.exec(String.fromCharCode(...head.filter((x) => x < 256)));
  return m ? Number(m[1]) : null;
}

/**
 * The chaos data set: `n` instruction pairs "#NNNN a+b=" -> "a+b", seeded. Every row names its
 * sample in its first tokens, so the test side can read back which samples a worker trained.
 * 16 tokens per row at most (a, b < 50), the built-in task's row length.
 */
export function writeChaosData(path: string, n: number, seed: number): void {
  if (n > 10_000) throw new Error(`chaos data: at most 10000 samples (4-digit ids), asked ${n}`);
  const rng = new Rng(seed);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = rng.int(50);
    const b = rng.int(50);
    lines.push(JSON.stringify({ prompt: `#${String(i).padStart(4, '0')} ${a}+${b}=`, response: String(a + b) }));
  }
  writeFileSync(path, lines.join('\n') + '\n');
}

export function parseTrace(text: string): TraceLine[] {
  const out: TraceLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as TraceLine);
    } catch {
      // A torn last line from a kill -9 mid-write: that event is lost with the process.
    }
  }
  return out;
}

export function countIndependently(traces: TraceLine[][], restarts: Restart[], steps: number, globalBatch: number): IndependentCount {
  const rs = [...restarts].sort((a, b) => a.startedAt - b.startedAt);
  /** Incarnation 0 is the first coordinator; incarnation k started at rs[k-1]. */
  const incarnationAt = (t: number) => rs.filter((r) => r.startedAt <= t).length;
  /** Steps of incarnation k that survived: those before the step the next one resumed at. */
  const survivesBelow = (k: number) => (k < rs.length ? rs[k].resumedStep : steps);
  const idsByStep = new Map<number, number[]>();
  let undecodable = 0;
  const folded: Array<Map<string, number>> = [];
  for (const trace of traces) {
    const mine = new Map<string, number>();
    folded.push(mine);
    const heads = new Map<string, number[][]>();
    const acked = new Map<string, { step: number; inc: number }>();
    let inc = 0;
    for (const e of trace) {
      if (e.ev === 'welcome') inc = incarnationAt(e.t);
      else if (e.ev === 'task') heads.set(e.taskId, e.heads);
      else if (e.ev === 'ack') acked.set(e.taskId, { step: e.step, inc });
      else if (e.ev === 'discard') for (const id of e.taskIds) acked.delete(id);
    }
    for (const [taskId, a] of acked) {
      if (a.step >= survivesBelow(a.inc) || a.step >= steps) continue;
      const rows = heads.get(taskId);
      if (!rows) {
        undecodable++;
        continue;
      }
      const list = idsByStep.get(a.step) ?? [];
      mine.set(taskId, rows.length);
      for (const h of rows) {
        const id = decodeSampleId(h);
        if (id === null) undecodable++;
        else list.push(id);
      }
      idsByStep.set(a.step, list);
    }
  }
  const count = new Map<number, number>();
  const badSteps: string[] = [];
  for (let s = 0; s < steps; s++) {
    const ids = idsByStep.get(s) ?? [];
    if (ids.length !== globalBatch) badSteps.push(`${s}: ${ids.length}`);
    for (const id of ids) count.set(id, (count.get(id) ?? 0) + 1);
  }
  let doubled = 0;
  for (const n of count.values()) doubled += n - 1;
  const trained = count.size;
  return { trained, lost: Math.max(0, steps * globalBatch - trained), doubled, undecodable, badSteps, folded };
}

export interface RoundCount extends IndependentCount {
  /** Distinct samples handed out in rounds that survived (their rows trained, or owed at the end). */
  handed: number;
}

/**
 * --mode diloco: a round's rows are trained when its outer step happens, so an acknowledged delta
 * counts as for a step (its round). Rounds differ in size (H per worker, quorum, churn), so the
 * global-batch check becomes "every round trained something". A sample is lost when a worker was
 * handed it in a surviving round and it was neither trained nor owed at the end (the final
 * checkpoint's meta.diloco.owed: rows returned by workers that missed a round, not yet re-leased;
 * the run ends before it trains them). A sample trained and still owed would be trained twice:
 * counted as doubled.
 */
export function countRounds(traces: TraceLine[][], restarts: Restart[], rounds: number, owedAtEnd: ReadonlySet<number>): RoundCount {
  const rs = [...restarts].sort((a, b) => a.startedAt - b.startedAt);
  const incarnationAt = (t: number) => rs.filter((r) => r.startedAt <= t).length;
  const survivesBelow = (k: number) => (k < rs.length ? rs[k].resumedStep : rounds);
  const handed = new Set<number>();
  const count = new Map<number, number>();
  const perRound = new Map<number, number>();
  let undecodable = 0;
  const folded: Array<Map<string, number>> = [];
  for (const trace of traces) {
    const mine = new Map<string, number>();
    folded.push(mine);
    const tasks = new Map<string, { step: number; inc: number; ids: Array<number | null> }>();
    const acked = new Set<string>();
    let inc = 0;
    for (const e of trace) {
      if (e.ev === 'welcome') inc = incarnationAt(e.t);
      else if (e.ev === 'task') tasks.set(e.taskId, { step: e.step, inc, ids: e.heads.map(decodeSampleId) });
      else if (e.ev === 'ack') acked.add(e.taskId);
      else if (e.ev === 'discard') for (const id of e.taskIds) acked.delete(id);
    }
    for (const [taskId, t] of tasks) {
      if (t.step >= survivesBelow(t.inc) || t.step >= rounds) continue;
      for (const id of t.ids) if (id !== null) handed.add(id);
      if (!acked.has(taskId)) continue;
      mine.set(taskId, t.ids.length);
      perRound.set(t.step, (perRound.get(t.step) ?? 0) + t.ids.length);
      for (const id of t.ids) {
        if (id === null) undecodable++;
        else count.set(id, (count.get(id) ?? 0) + 1);
      }
    }
    // An acknowledged task whose rows never arrived in the trace cannot be decoded.
    for (const id of acked) if (!tasks.has(id)) undecodable++;
  }
  let doubled = 0;
  for (const [id, n] of count) doubled += n - 1 + (owedAtEnd.has(id) ? 1 : 0);
  let lost = 0;
  for (const id of handed) if (!count.has(id) && !owedAtEnd.has(id)) lost++;
  const badSteps: string[] = [];
  for (let r = 0; r < rounds; r++) if (!perRound.get(r)) badSteps.push(`${r}: 0`);
  return { trained: count.size, lost, doubled, undecodable, badSteps, folded, handed: [...handed].filter((id) => !owedAtEnd.has(id)).length };
}
