// Live push to dashboards: socket.io namespace `/dashboard` (same msgpack parser as workers).
// On connect the coordinator sends `snapshot` (the same JSON as GET /api/status) and `history`
// (every HistoryPoint so far); afterwards it pushes `status` (about once per second while anything
// changes), `step` per finished optimizer step, `eval` per evaluation, `worker` on each worker
// change and `log` for notable events. Dashboards only listen; they send nothing.

import type { WirePlan } from './messages.ts';

export const DASHBOARD_EVENTS = {
  snapshot: 'snapshot',
  history: 'history',
  status: 'status',
  step: 'step',
  eval: 'eval',
  worker: 'worker',
  log: 'log',
} as const;

export interface WorkerRow {
  id: string;
  name?: string;
  backend: string;
  /** Adapter description (untrusted text: render as text, never HTML). */
  adapter: string;
  isSoftware: boolean;
  state: 'connecting' | 'idle' | 'computing' | 'waiting' | 'paused' | 'dead' | 'left' | 'kicked';
  /** The plan's role; 'waiting': a stage worker not (yet) in a pipeline. */
  role: WirePlan['role'] | 'waiting';
  /** Stage workers in a pipeline: blocks [from, to) and the pipeline's id. */
  layers?: [number, number];
  pipeline?: string;
  budgetBytes: number;
  plan: WirePlan;
  tasksDone: number;
  samplesDone: number;
  tokensDone: number;
  /** Rejections by code, and their total. */
  rejected: number;
  rejectedByCode: Record<string, number>;
  tokensPerSec: number;
  /** ms since epoch. */
  lastSeen: number;
  joinedAt: number;
}

/** Defences (coordinator/security): verification, bans, rejection totals, trust per worker id. */
export interface SecuritySummary {
  aggregate: string;
  verifyRate: number;
  verifyTolerance: number;
  verified: number;
  mismatches: number;
  verifyMs: number;
  /** Bytes of per-result gradients a robust aggregator holds for the running step. */
  heldGradientBytes: number;
  counters: Record<string, number>;
  rejectsByCode: Record<string, number>;
  banned: Array<{ id: string; reason: string; at: number }>;
  trust: Record<string, { trust: number; verifiedOk: number; mismatches: number; penalty: number; banned: boolean; verifyProbability: number }>;
}

export interface StatusSnapshot {
  /** Hardening state (absent on coordinators without the security layer). */
  security?: SecuritySummary;
  step: number;
  epoch: number;
  version: number;
  /** Mean training loss of the last finished step (null before the first). */
  loss: number | null;
  lr: number;
  samplesTrained: number;
  tokensTrained: number;
  /** Training mode (--mode). */
  mode?: 'sync' | 'diloco';
  /** Training objective (--objective): lm, or dpo (preference tuning; eval then has the preference figures). */
  objective?: 'lm' | 'dpo';
  /** --mode diloco: rounds finished (== step: one outer step per round). */
  round?: number;
  /** Bytes received from / sent to workers since start, counted at the socket (both modes). */
  wire?: { bytesIn: number; bytesOut: number };
  /** --mode diloco: round settings and progress (dashboard diloco view). */
  diloco?: DilocoStatus;
  tokensPerSec: number;
  paused: boolean;
  finished: boolean;
  workers: WorkerRow[];
  /** Pipelines of stage workers (empty when none; docs/pipeline.md). */
  pipelines?: PipelineStatus[];
  /**
   * Present when the coordinator pages the workers table (more than PAGED_ABOVE connected workers):
   * `workers` is then empty in pushed snapshots and `security.trust` holds no entries; each
   * dashboard gets its own page as `workers:page` (it asks with `workers:query`).
   */
  workersPaged?: { total: number; live: number };
  checkpoint: { step: number; file: string; at: number } | null;
  model: { preset: string; params: number; config: import('../model/config.ts').ModelConfig };
  eval: { step: number; loss: number; accuracy: number | null; tasks?: EvalTaskAccuracy[]; samples?: EvalSample[] } & PreferenceEvalFigures | null;
  /** The training data, and prompts of it a person can try in the playground (built-in task). */
  task?: { name: string; builtIn: boolean; examplePrompts: string[]; answerNote?: string };
  /** Exactly-once accounting for the current epoch (see docs/protocol.md). */
  accounting: EpochAccounting;
  globalBatch: number;
  uptimeSec: number;
  /** Preference pairs collected in the playground's Compare mode (preferences.jsonl in the run dir). */
  preferences?: { count: number };
  /** --redis: the processes sharing this run (docs/scale.md); absent on a single coordinator. */
  cluster?: ClusterStatus;
}

/** A pipeline of stage workers (docs/pipeline.md), as /api/status reports it. */
export interface PipelineStatus {
  id: string;
  stages: Array<{ workerId: string; layers: [number, number]; embeddings: boolean; head: boolean; inFlight: number }>;
  /** Micro-batches in flight at most, and the micro-batch size (sequences). */
  inFlight: number;
  microBatch: number;
  /** Share of stage time spent idle in its last share: 1 - busy / (stages x wall). */
  bubble: number;
  /** Measured over its last shares (0 before the first). */
  tokensPerSec: number;
}

/** The processes of a multi-coordinator run, as every one of them reports it. */
export interface ClusterStatus {
  run: string;
  /** The leading process's id (null while none holds the lease, e.g. Redis is unreachable). */
  leader: string | null;
  /** The leader's fencing epoch (0 when unknown). */
  epoch: number;
  /** The process answering. */
  self: string;
  /** False while this process cannot reach Redis (the view is then its last one). */
  redis: boolean;
  processes: Array<{ id: string; url: string; role: 'leader' | 'gateway'; workers: number }>;
}

export interface EpochAccounting {
  epoch: number;
  epochSize: number;
  /** Samples whose gradient entered an optimizer step this epoch (each exactly once). */
  trained: number;
  /** Samples trained twice this epoch: must stay 0. */
  doubled: number;
  /** Leases issued / re-leased after a timeout or disconnect / results rejected. */
  leased: number;
  released: number;
  rejectedResults: number;
}

export interface HistoryPoint {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  tokensPerSec: number;
  stepMs: number;
  workers: number;
  t: number;
  evalLoss?: number;
  evalAccuracy?: number | null;
}

/**
 * --objective dpo: held-out pair figures. `loss` is then the mean DPO loss, `accuracy` the exact
 * match of the instruction task when the pairs are prompts of one (the built-in task), else null.
 */
export interface PreferenceEvalFigures {
  /** Share of held-out pairs whose policy log-prob of chosen exceeds that of rejected. */
  preferenceAccuracy?: number;
  /** Mean implicit reward margin beta * ((log pi - log ref)(chosen) - (log pi - log ref)(rejected)). */
  rewardMargin?: number;
  /** Held-out pairs the figures are over. */
  pairs?: number;
}

export interface EvalPoint extends PreferenceEvalFigures {
  step: number;
  loss: number;
  accuracy: number | null;
  t: number;
  /** Exact match per task (built-in task: addition, subtraction, reversal). */
  tasks?: EvalTaskAccuracy[];
  /** The same few held-out prompts at each evaluation with the model's greedy answers. */
  samples?: EvalSample[];
}

export interface EvalTaskAccuracy {
  task: string;
  correct: number;
  total: number;
  accuracy: number;
}

/** A held-out prompt, its reference answer and the model's answer (all model/data text: show as text). */
export interface EvalSample {
  prompt: string;
  response: string;
  output: string;
  correct: boolean;
}

export interface WorkerChange {
  op: 'join' | 'update' | 'leave';
  worker: WorkerRow;
}

export interface LogEntry {
  t: number;
  level: 'info' | 'warn' | 'error';
  kind: 'join' | 'leave' | 'dead' | 'kick' | 'reject' | 'checkpoint' | 'step' | 'eval' | 'admin' | 'resume' | 'info';
  message: string;
  workerId?: string;
  code?: string;
}

export interface DashboardEvents {
  snapshot: (s: StatusSnapshot) => void;
  history: (h: HistoryPoint[]) => void;
  status: (s: StatusSnapshot) => void;
  step: (p: HistoryPoint) => void;
  eval: (e: EvalPoint) => void;
  worker: (c: WorkerChange) => void;
  log: (e: LogEntry) => void;
}

/** --mode diloco in /api/status and the dashboard. */
export interface DilocoStatus {
  innerSteps: number;
  compress: string;
  outerLr: number;
  outerMomentum: number;
  /** The running round: its number, quorum, leases per worker (H, rows) and who answered. */
  running: { round: number; quorum: number; participants: number; leases: Array<{ workerId: string; H: number; rows: number; done: boolean }> } | null;
  /** Payload bytes of accepted deltas and published updates since start. */
  deltaBytes: number;
  updateBytes: number;
  /** Wire bytes per trained token (in + out). */
  bytesPerToken: number | null;
  /** fp32 bytes of the same deltas and updates / their packed bytes. */
  compressionRatio: number | null;
  /** Rows owed to training (returned by workers that missed a round). */
  owed: number;
}

/** Sort keys of the paged workers table. */
export const WORKER_SORT_KEYS = ['id', 'name', 'state', 'backend', 'tasks', 'tps', 'rejected', 'lastSeen'] as const;
export type WorkerSortKey = (typeof WORKER_SORT_KEYS)[number];

/** dashboard -> coordinator `workers:query`: which page of the workers table to push to it. */
export interface WorkersQuery {
  /** 0-based page index. */
  page: number;
  /** Rows per page (1..100). */
  size: number;
  sort: WorkerSortKey;
  /** 1 ascending, -1 descending. */
  dir: 1 | -1;
  /** Case-insensitive substring of id, name, adapter, backend, state or role ('' = all). */
  filter: string;
}

/** coordinator -> dashboard `workers:page`: one page of the workers table, pushed at most ~1/s. */
export interface WorkersPage {
  query: WorkersQuery;
  /** Workers the coordinator knows (connected or recently gone), and those matching the filter. */
  total: number;
  matched: number;
  /** Workers per state, over all of them. */
  states: Record<string, number>;
  rows: WorkerRow[];
  /** Trust of the rows' workers (what `security.trust` holds for small clusters). */
  trust: SecuritySummary['trust'];
}
