// The worker <-> coordinator wire protocol, version 1 (docs/protocol.md). Event names and payload
// types for both directions. Every payload travels msgpack-encoded (./parser.ts): tensors are raw
// typed arrays (Float32Array / Int32Array / Uint8Array), never JSON numbers or base64.
//
// Both sides import these types; the coordinator validates everything it receives at runtime
// (./validate.ts) because a volunteer can send anything.

import type { BackendName, StepTimings } from '../backend.ts';
import type { ModelConfig } from '../model/config.ts';
import type { DeltaMsg, RoundTaskMsg, UpdateMsg } from './round-messages.ts';
import type { HopMsg, StageOutMsg, StageTaskMsg } from './stage-messages.ts';

export const PROTOCOL_VERSION = 1 as const;

/**
 * The largest single frame a Node worker takes from the coordinator (ws's `maxPayload`, whose
 * default of 100 MiB stops any params frame of a model over ~26M parameters): a float32 model of
 * up to ~1B parameters. Browsers' WebSocket has no such limit.
 */
export const MAX_INCOMING_FRAME_BYTES = 2 ** 32;

/** socket.io namespace for workers (the default one) and for the live dashboard. */
export const WORKER_NAMESPACE = '/';
export const DASHBOARD_NAMESPACE = '/dashboard';

/** Event names, worker -> coordinator. */
export const C2S = {
  hello: 'hello',
  result: 'result',
  /** A round worker's packed pseudo-gradient (--mode diloco; round.ts). */
  delta: 'delta',
  /** A pipeline stage's output: activations, their gradient, or the share's gradient (stage.ts). */
  stageOut: 'stageOut',
  heartbeat: 'heartbeat',
  bye: 'bye',
} as const;

/** Event names, coordinator -> worker. */
export const S2C = {
  welcome: 'welcome',
  params: 'params',
  task: 'task',
  /** --mode diloco (round.ts): a round of H inner steps, and published weights as a packed delta. */
  round: 'round',
  update: 'update',
  /** Pipeline stages (stage.ts): a share of the step for a stage, and one micro-batch hop. */
  stage: 'stage',
  hop: 'hop',
  ack: 'ack',
  discard: 'discard',
  reject: 'reject',
  wait: 'wait',
  notice: 'notice',
  heartbeat: 'heartbeat',
} as const;

// ---------------------------------------------------------------- worker -> coordinator

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  description: string;
  /** SwiftShader / fallback adapters are ~100x slower: the dashboard says so. */
  isSoftware: boolean;
}

export interface DeviceLimits {
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
}

export interface HelloMsg {
  protocol: typeof PROTOCOL_VERSION;
  backend: BackendName;
  adapter: AdapterInfo;
  limits: DeviceLimits;
  /** Bytes the worker found it could allocate (WebGPU OOM probe, or free RAM for cpu). */
  probedBytes?: number;
  /** The volunteer's own cap, bytes. */
  userCapBytes?: number;
  /** A previous workerId, to reconnect under the same identity (stats continue). */
  resumeId?: string;
  /** Free-text label (shown as text, never HTML). */
  name?: string;
  /** Client software, e.g. "node-worker/0.1" or "web-worker/0.1". */
  agent?: string;
  /** Required when the coordinator runs with --join-token (closed clusters). */
  joinToken?: string;
}

export interface ResultMsg {
  taskId: string;
  step: number;
  /** Parameter version the gradient was computed at; must equal the task's. */
  version: number;
  /** Mean masked cross-entropy of this task. */
  loss: number;
  /** Masked-in positions the loss averages over; must equal the task's `tokens`. */
  tokens: number;
  /** d(loss)/d(params), parameter-table layout, length = parameterCount(model). */
  grads: Float32Array;
  /**
   * Set by validateResult when the gradient came as `grads16` (IEEE binary16, same length; the
   * task asked compress 'fp16'): `grads` then holds it decoded to float32.
   */
  packed?: 'fp16';
  gradNorm: number;
  nonFinite: number;
  timings: StepTimings;
}

export interface HeartbeatMsg {
  /** Worker clock, ms (echoed back so a worker can measure round-trip). */
  t: number;
  state?: WorkerState;
}

export interface ByeMsg {
  reason?: string;
}

export type WorkerState = 'idle' | 'computing' | 'uploading' | 'paused' | 'waiting';

// ---------------------------------------------------------------- coordinator -> worker

/** The memory plan for one worker (shape of shared/memory/plan.ts WorkerPlan). */
export interface WirePlan {
  role: 'replica' | 'stage' | 'too-small' | 'round';
  budgetBytes: number;
  trainableParams: number;
  microBatch: number;
  seqLen: number;
  layerRange?: [number, number];
  reason: string;
  breakdown?: Record<string, number>;
}

export interface WelcomeMsg {
  protocol: typeof PROTOCOL_VERSION;
  workerId: string;
  preset: string;
  model: ModelConfig;
  paramCount: number;
  plan: WirePlan;
  /** Send a heartbeat this often. */
  heartbeatMs: number;
  /** The coordinator declares a worker dead after this much silence. */
  deadAfterMs: number;
  /** Largest message the coordinator accepts, bytes. */
  maxMessageBytes: number;
}

export interface ParamsMsg {
  version: number;
  step: number;
  params: Float32Array;
}

export interface TaskMsg {
  taskId: string;
  step: number;
  /** The parameter version to compute at (the worker holds it from the last `params`). */
  version: number;
  B: number;
  T: number;
  inputs: Int32Array;
  targets: Int32Array;
  mask: Uint8Array;
  /** Masked-in positions in this task (sum of mask): the result must report exactly this. */
  tokens: number;
  /** Dataset sample ids of the B rows (for logs/verification; the worker need not use them). */
  sampleIds: Uint32Array;
  /** Wall-clock ms the lease lasts from now; after that the task goes to another worker. */
  leaseMs: number;
  /** 'fp16': send the gradient as IEEE binary16 (`grads16` instead of `grads`; --compress fp16). */
  compress?: 'fp16';
  /**
   * --objective dpo (docs/dpo.md): the B rows are B/2 preference pairs (chosen, rejected, ...);
   * compute the DPO loss and gradient (shared/model/dpo.ts) instead of the LM loss. `tokens` and
   * the result's `tokens` are then the number of pairs, and `sampleIds` has one id per pair.
   */
  dpo?: TaskDpo;
}

export interface TaskDpo {
  beta: number;
  /** The frozen reference model's sequence log-probs of the B rows (computed by the coordinator). */
  refLogProbs: Float32Array;
}

export interface AckMsg {
  taskId: string;
  step: number;
}

/**
 * Results this worker had acknowledged were thrown away before their step finished (a ban of
 * another worker restarted the step's accumulation); their samples are leased again. An ack
 * minus its discards is what the worker really contributed: tests count samples from that.
 */
export interface DiscardMsg {
  step: number;
  taskIds: string[];
  reason: string;
}

export interface RejectMsg {
  /** The task the rejected message referred to, if any. */
  taskId?: string;
  /** The event that was rejected (e.g. "result", "hello"). */
  event: string;
  code: RejectCode;
  message: string;
}

export interface WaitMsg {
  /** Why there is no work for this worker now (plan too small, paused, step full, ...). */
  reason: string;
  code: 'paused' | 'no-task' | 'plan' | 'finished' | 'no-params';
}

export interface NoticeMsg {
  level: 'info' | 'warn' | 'error';
  message: string;
  /** 'kicked' and 'shutdown' precede a server-side disconnect. */
  kind?: 'kicked' | 'shutdown' | 'info';
}

export interface ServerHeartbeatMsg {
  /** Echo of the worker's `t`. */
  t: number;
  /** Server clock, ms. */
  serverTime: number;
}

// ---------------------------------------------------------------- rejection codes

/** Named codes for every message the coordinator refuses; counted per worker. */
export const REJECT_CODES = [
  'BAD_SCHEMA', // not an object / missing or wrongly typed field
  'PROTOCOL_VERSION', // hello with another protocol version
  'NOT_WELCOMED', // result/heartbeat before a successful hello
  'UNKNOWN_TASK', // task id never issued
  'NOT_YOUR_TASK', // task leased to another worker
  'LATE', // lease expired and the task was re-leased (or the step is over)
  'DUPLICATE', // task already completed
  'STALE_VERSION', // gradient computed at another parameter version
  'WRONG_STEP', // step field does not match the task
  'BAD_LENGTH', // gradient length != parameter count
  'TOKENS_MISMATCH', // tokens != the task's masked-in count
  'NON_FINITE', // NaN/Inf in loss, norm or gradient
  'OUT_OF_RANGE', // negative loss/norm, impossible counts or timings
  'TOO_LARGE', // message or field over the size limit
  'RATE_LIMIT', // too many messages
  'BANNED', // worker banned
  'NO_CAPACITY', // hello from a worker the plan cannot use (it still gets a welcome + wait)
  'UNAUTHORIZED', // missing or wrong join token
  'NORM_OUTLIER', // gradient norm far above the recent median (coordinator/security)
  'VERIFY_FAILED', // the coordinator's re-computation of the task disagrees (coordinator/security)
  'UNVERIFIED', // sampled for re-computation, which could not run; re-leased (--verify-fail closed)
] as const;
export type RejectCode = (typeof REJECT_CODES)[number];

// ---------------------------------------------------------------- typed socket.io event maps

export interface ClientToServerEvents {
  hello: (m: HelloMsg) => void;
  result: (m: ResultMsg) => void;
  delta: (m: DeltaMsg) => void;
  stageOut: (m: StageOutMsg) => void;
  heartbeat: (m: HeartbeatMsg) => void;
  bye: (m: ByeMsg) => void;
}

export interface ServerToClientEvents {
  welcome: (m: WelcomeMsg) => void;
  params: (m: ParamsMsg) => void;
  task: (m: TaskMsg) => void;
  round: (m: RoundTaskMsg) => void;
  update: (m: UpdateMsg) => void;
  stage: (m: StageTaskMsg) => void;
  hop: (m: HopMsg) => void;
  ack: (m: AckMsg) => void;
  discard: (m: DiscardMsg) => void;
  reject: (m: RejectMsg) => void;
  wait: (m: WaitMsg) => void;
  notice: (m: NoticeMsg) => void;
  heartbeat: (m: ServerHeartbeatMsg) => void;
}

/** Default timings (the coordinator may send others in `welcome`). */
export const DEFAULT_HEARTBEAT_MS = 2_000;
export const DEFAULT_DEAD_AFTER_MS = 10_000;
