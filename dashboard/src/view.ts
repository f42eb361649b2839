// Maps the coordinator's pushed types (shared/protocol/dashboard.ts) to what the page draws.
// Worker-supplied strings (name, adapter) pass through unchanged as plain strings; the renderers
// put them into the page with textContent only.

import type { LogEntry, SecuritySummary, StatusSnapshot, WorkerRow } from '../../shared/protocol/dashboard.ts';
import type { Breakdown, MemoryBar } from './memory-bars.ts';

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export interface WorkerView {
  id: string;
  name: string;
  backend: string;
  adapter: string;
  software: boolean;
  state: string;
  role: string;
  budgetBytes: number | null;
  tasksDone: number | null;
  tokensPerSec: number | null;
  rejected: number | null;
  /** "LATE 2, DUPLICATE 1" */
  rejectedCodes: string;
  lastSeen: number | null;
  reason: string;
  breakdown: Breakdown | null;
  /** From StatusSnapshot.security.trust (null when the coordinator reports none for this id). */
  trust: TrustView | null;
}

export interface TrustView {
  /** 0..1 */
  trust: number;
  verifiedOk: number;
  mismatches: number;
  penalty: number;
  banned: boolean;
  verifyProbability: number;
}

export type TrustMap = ReadonlyMap<string, TrustView>;

function breakdownOf(v: Record<string, number> | undefined): Breakdown | null {
  if (!v) return null;
  return { weights: num(v.weights) ?? 0, gradients: num(v.gradients) ?? 0, optimizer: num(v.optimizer) ?? 0, activations: num(v.activations) ?? 0 };
}

export function workerView(w: WorkerRow, trust: TrustMap = new Map()): WorkerView {
  const plan = w.plan;
  const role = w.role ?? plan?.role ?? '';
  // A stage in a pipeline shows the blocks it holds there; one still waiting, what its plan says it could hold.
  const layers = Array.isArray(w.layers) ? w.layers : role === 'stage' ? plan?.layerRange : undefined;
  const span = layers ? (layers[1] - layers[0] === 1 ? `layer ${layers[0]}` : `layers ${layers[0]}–${layers[1] - 1}`) : '';
  const range = layers ? ` (${span}${typeof w.pipeline === 'string' ? `, pipeline ${w.pipeline}` : ''})` : '';
  return {
    id: String(w.id),
    name: typeof w.name === 'string' ? w.name : '',
    backend: String(w.backend ?? ''),
    adapter: typeof w.adapter === 'string' ? w.adapter : '',
    software: w.isSoftware === true,
    state: String(w.state ?? ''),
    role: role + range,
    budgetBytes: num(w.budgetBytes) ?? num(plan?.budgetBytes),
    tasksDone: num(w.tasksDone),
    tokensPerSec: num(w.tokensPerSec),
    rejected: num(w.rejected),
    rejectedCodes: Object.entries(w.rejectedByCode ?? {})
      .filter(([, n]) => n > 0)
      .map(([c, n]) => `${c} ${n}`)
      .join(', '),
    lastSeen: num(w.lastSeen),
    reason: typeof plan?.reason === 'string' ? plan.reason : '',
    breakdown: breakdownOf(plan?.breakdown),
    trust: trust.get(String(w.id)) ?? null,
  };
}

export interface BanView {
  id: string;
  reason: string;
  at: number | null;
}

export interface SecurityView {
  aggregate: string;
  verifyRate: number | null;
  verifyTolerance: number | null;
  verified: number | null;
  mismatches: number | null;
  verifyMs: number | null;
  heldGradientBytes: number | null;
  /** "replays 1, normOutliers 2" (non-zero counters only; "" when all are zero). */
  counters: string;
  /** "VERIFY_FAILED 2, LATE 1" (non-zero only, largest first). */
  rejects: string;
  /** Newest first. */
  bans: BanView[];
  trust: TrustMap;
}

const nonZero = (o: Record<string, number> | undefined, sort: boolean): string => {
  const e = Object.entries(o ?? {}).filter(([, n]) => typeof n === 'number' && n > 0);
  if (sort) e.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return e.map(([k, n]) => `${k} ${n}`).join(', ');
};

/** StatusSnapshot.security for the Security panel and the trust column; null when absent. */
export function securityView(s: SecuritySummary | undefined | null): SecurityView | null {
  if (!s || typeof s !== 'object') return null;
  const trust = new Map<string, TrustView>();
  for (const [id, t] of Object.entries(s.trust ?? {})) {
    if (!t || typeof t !== 'object') continue;
    trust.set(id, {
      trust: num(t.trust) ?? 0,
      verifiedOk: num(t.verifiedOk) ?? 0,
      mismatches: num(t.mismatches) ?? 0,
      penalty: num(t.penalty) ?? 0,
      banned: t.banned === true,
      verifyProbability: num(t.verifyProbability) ?? 0,
    });
  }
  const bans = (Array.isArray(s.banned) ? s.banned : [])
    .map((b) => ({ id: String(b?.id ?? ''), reason: typeof b?.reason === 'string' ? b.reason : '', at: num(b?.at) }))
    .sort((a, b) => (b.at ?? 0) - (a.at ?? 0));
  return {
    aggregate: String(s.aggregate ?? ''),
    verifyRate: num(s.verifyRate),
    verifyTolerance: num(s.verifyTolerance),
    verified: num(s.verified),
    mismatches: num(s.mismatches),
    verifyMs: num(s.verifyMs),
    heldGradientBytes: num(s.heldGradientBytes),
    counters: nonZero(s.counters, false),
    rejects: nonZero(s.rejectsByCode, true),
    bans,
    trust,
  };
}

/** Live workers only: dead/left/kicked rows keep their table entry but not a share of the plan. */
/**
 * One bar per live worker. A worker in a pipeline shows its stage's bytes (`stages`, by worker id, from
 * pipeline-view.ts: the blocks it holds there), not its hello-time plan of what it could hold.
 */
export function memoryBars(workers: WorkerView[], stages: ReadonlyMap<string, MemoryBar> = new Map()): MemoryBar[] {
  return workers
    .filter((w) => !['dead', 'left', 'kicked'].includes(w.state))
    .filter((w) => w.budgetBytes !== null || w.breakdown !== null || stages.has(w.id))
    .map((w) => {
      const st = stages.get(w.id);
      return {
        key: w.id,
        label: w.name ? `${w.name} (${w.id})` : w.id,
        budgetBytes: w.budgetBytes ?? st?.budgetBytes ?? 0,
        breakdown: st?.breakdown ?? w.breakdown ?? { weights: 0, gradients: 0, optimizer: 0, activations: 0 },
        note: st ? `${w.role}: ${st.note ?? ''}` : w.role ? (w.role.startsWith('replica') ? w.role : `${w.role}: ${w.reason}`) : undefined,
      };
    });
}

export interface EventView {
  time: number | null;
  kind: string;
  level: string;
  code: string;
  workerId: string;
  message: string;
}

export function eventView(e: LogEntry): EventView {
  return {
    time: num(e.t),
    kind: String(e.kind ?? 'info'),
    level: String(e.level ?? 'info'),
    code: typeof e.code === 'string' ? e.code : '',
    workerId: typeof e.workerId === 'string' ? e.workerId : '',
    message: String(e.message ?? ''),
  };
}

export interface StatusView {
  step: number | null;
  epoch: number | null;
  loss: number | null;
  evalLoss: number | null;
  evalAccuracy: number | null;
  tokensPerSec: number | null;
  lr: number | null;
  samplesTrained: number | null;
  runState: string;
  preset: string;
  params: number | null;
  checkpointStep: number | null;
  checkpointFile: string;
  /** "trained 96 / 512, doubled 0, re-leased 1" */
  accounting: string;
  /** Preference pairs collected in the playground's Compare mode (null: not reported). */
  preferences: number | null;
}

export function statusView(s: StatusSnapshot): StatusView {
  const a = s.accounting;
  return {
    step: num(s.step),
    epoch: num(s.epoch),
    loss: num(s.loss),
    evalLoss: num(s.eval?.loss),
    evalAccuracy: num(s.eval?.accuracy),
    tokensPerSec: num(s.tokensPerSec),
    lr: num(s.lr),
    samplesTrained: num(s.samplesTrained),
    runState: s.finished ? 'finished' : s.paused ? 'paused' : 'running',
    preset: String(s.model?.preset ?? ''),
    params: num(s.model?.params),
    checkpointStep: num(s.checkpoint?.step),
    checkpointFile: String(s.checkpoint?.file ?? ''),
    preferences: num(s.preferences?.count),
    accounting: a ? `epoch ${a.epoch}: ${a.trained}/${a.epochSize} trained, ${a.doubled} doubled, ${a.released} re-leased, ${a.rejectedResults} rejected` : '',
  };
}
