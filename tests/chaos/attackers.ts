// What each attacker got through, from its own trace (accounting.ts): how many identities it
// used, how many results it computed, which of them were lies (a sleeper's first N results per
// identity are honest), and how many of its samples entered training (lies apart).

import { GRADIENT_FAULTS, parseFault, type FaultSpec } from '../../worker-web/client/faults.ts';
import type { TraceLine } from './accounting.ts';

export interface AttackerOutcome {
  identities: number;
  tasks: number;
  /** Results computed as lies. */
  lies: number;
  /** Most lies computed by one identity (a sleeper: results after it turned, until its ban). */
  liesPerIdentityMax: number;
  /** Its samples that entered training, and those of lying results. */
  foldedSamples: number;
  lyingFoldedSamples: number;
}

/**
 * Honest results per identity before its gradients lie (Infinity: they never do). Only gradient
 * faults lie in what gets folded in; stale, garbage and slow workers send honest gradients (a stale
 * one is refused unless its version happens to be current, and then it is honest).
 */
export function honestStretch(f: FaultSpec): number {
  if (f.kind === 'sybil') return honestStretch(f.then);
  if (f.kind === 'sleeper') return f.after;
  return GRADIENT_FAULTS.has(f.kind) ? 0 : Infinity;
}

export function attackerOutcome(fault: string, trace: TraceLine[], folded: Map<string, number>): AttackerOutcome {
  const stretch = honestStretch(parseFault(fault));
  const perIdentity = new Map<string, number>();
  const lying = new Set<string>();
  let id = '';
  let tasks = 0;
  for (const e of trace) {
    if (e.ev === 'welcome') id = e.workerId;
    else if (e.ev === 'task') {
      tasks++;
      const n = (perIdentity.get(id) ?? 0) + 1;
      perIdentity.set(id, n);
      if (n > stretch) lying.add(e.taskId);
    }
  }
  const liesBy = [...perIdentity.values()].map((n) => Math.max(0, n - stretch));
  let foldedSamples = 0;
  let lyingFoldedSamples = 0;
  for (const [task, n] of folded) {
    foldedSamples += n;
    if (lying.has(task)) lyingFoldedSamples += n;
  }
  return {
    identities: perIdentity.size,
    tasks,
    lies: lying.size,
    liesPerIdentityMax: liesBy.length ? Math.max(...liesBy) : 0,
    foldedSamples,
    lyingFoldedSamples,
  };
}

/** One row per attacker: what it cost and what it got through. */
export function formatAttackers(rows: Array<{ scenario: string; samplesTrained: number; seconds: number; attackers: Array<{ fault: string; name: string; banned: boolean; bans: number; outcome: AttackerOutcome }> }>): string {
  const head = ['scenario', 'attacker', 'identities', 'bans', 'results computed', 'lies', 'max lies per identity', 'samples folded (of lies)', 'lies share of trained'];
  const lines = rows.flatMap((f) => f.attackers.map((a) => [
    f.scenario, a.fault, String(a.outcome.identities), String(a.bans), String(a.outcome.tasks), String(a.outcome.lies), String(a.outcome.liesPerIdentityMax),
    `${a.outcome.foldedSamples} (${a.outcome.lyingFoldedSamples})`,
    `${f.samplesTrained ? ((100 * a.outcome.lyingFoldedSamples) / f.samplesTrained).toFixed(2) : '-'}%`,
  ]));
  const all = [head, ...lines];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const fmt = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  return [fmt(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...lines.map(fmt)].join('\n');
}
