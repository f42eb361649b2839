// Runtime validation of every protocol message. A volunteer can send anything: each check
// returns a named rejection code (messages.ts REJECT_CODES) and a message saying which field is
// wrong, and the caller changes nothing on failure. The task/lease checks that need the
// coordinator's state (known task, lease owner, version) live in coordinator/; the shape, length,
// range and finiteness checks live here so that workers can validate what the coordinator sends.

import { decodeHalf } from '../diloco/fp16.ts';
import type { ModelConfig } from '../model/config.ts';
import {
  PROTOCOL_VERSION,
  type AdapterInfo,
  type ByeMsg,
  type HeartbeatMsg,
  type HelloMsg,
  type ParamsMsg,
  type ResultMsg,
  type TaskDpo,
  type TaskMsg,
  type WelcomeMsg,
} from './messages.ts';
import { KERNEL_MIN_VALUES, scratchKernelsHere, type GradientKernels } from '../simd/gradient-kernels.ts';
import { Bad, int, MAX_STRING, num, obj, run, str, typed, type Checked } from './field-checks.ts';

// The field checkers live in a leaf shared with round.ts.
export type { Checked } from './field-checks.ts';

const MAX_TASK_ID = 64;

/** Index of the first NaN/Inf, or -1. One pass, no allocation. */
export function firstNonFinite(a: Float32Array): number {
  // Every result's gradient is scanned, so this is a hot loop. A float32 is NaN or +-Inf iff its
  // exponent bits are all ones, i.e. iff (bits & 0x7f800000) + 0x00800000 reaches bit 31: OR that
  // over blocks of 1,024 values (integer ops, no branch), and look closer only in a block where
  // the sign bit of the OR is set. ~2x the one-value-at-a-time `v - v !== 0` loop.
  const u = new Int32Array(a.buffer, a.byteOffset, a.length);
  const n = u.length;
  const E = 0x7f800000;
  const H = 0x00800000;
  let i = 0;
  for (; i + 1024 <= n; i += 1024) {
    let m = 0;
    for (let j = i; j < i + 1024; j += 4) m |= ((u[j] & E) + H) | ((u[j + 1] & E) + H) | ((u[j + 2] & E) + H) | ((u[j + 3] & E) + H);
    if (m < 0) break;
  }
  for (; i < n; i++) if ((u[i] & E) === E) return i;
  return -1;
}

/**
 * Sum of squares of `a` in one pass (float64). Also the finite check: every
 * finite float32 squared is < 1.2e77, so the sum of up to 2^31 of them stays finite, while one
 * NaN or Inf makes it NaN or Inf. validateResult uses it instead of firstNonFinite so the norm that
 * security needs (norm check, median reference) comes out of the same pass (measuredNorm).
 */
export function sumOfSquares(a: Float32Array): number {
  // WebAssembly SIMD where this runtime has it (shared/simd): blocks of 32 squares summed in
  // float32, then in float64, so it agrees with this loop within 3e-7 (relative), far inside what
  // the norm is used for (security compares it with the reported norm at 1e-2 and with the
  // median at --norm-limit times). Finiteness is exact: an overflowing block is re-summed in f64.
  if (a.length >= KERNEL_MIN_VALUES) {
    const k = scratchKernelsHere();
    if (k) return k.sumOfSquares(a);
  }
  // One accumulator on purpose: V8 removes the bounds checks of this plain loop (~4.6 GB/s in
  // cache here), while a 4-way unrolled one with a[i + 1..3] kept them and ran at ~2.7 GB/s.
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return s;
}

/** Norms measured by validateResult, by gradient array (security reads them: no second pass). */
const measuredNorms = new WeakMap<Float32Array, number>();

/** The L2 norm validateResult measured for this exact array, or undefined (not validated here). */
export function measuredNorm(grads: Float32Array): number | undefined {
  return measuredNorms.get(grads);
}

/** Digests of the bytes validateResult scanned (GradientKernels.scan), by gradient array. */
const measuredDigests = new WeakMap<Float32Array, string>();

/**
 * A digest of `grads`' bytes for replay detection (coordinator/security/replay.ts): the one
 * validateResult took in its scan when it has one, else computed now the same way (the SIMD
 * scan's keyed hash from KERNEL_MIN_VALUES floats up where this runtime has the kernels), or undefined
 * where it has no kernels or the gradient is small (the caller hashes it itself). One function of
 * the bytes within a process, whichever path computed it.
 */
export function scannedDigest(grads: Float32Array): string | undefined {
  const d = measuredDigests.get(grads);
  if (d !== undefined) return d;
  const k = grads.length >= KERNEL_MIN_VALUES ? scratchKernelsHere() : null;
  return k ? k.scan(grads).digest : undefined;
}

/**
 * validateResult's scan: the sum of squares and, when asked and the SIMD kernels run, the digest.
 * An array this module already scanned (the same decoded frame validated again: security's
 * pre-verification, then the assigner) is not scanned again.
 */
function scanGradient(grads: Float32Array, digest: boolean, stage?: GradientStager): { ss: number; digest?: string; again?: true } {
  const norm = measuredNorms.get(grads);
  if (norm !== undefined && (!digest || measuredDigests.has(grads))) return { ss: norm * norm, again: true };
  const to = stage && grads.length >= KERNEL_MIN_VALUES ? stage(grads) : null;
  if (to) {
    const r = to.kernels.scanInto(grads, to.byteOffset, digest);
    return { ss: r.sumSquares, digest: r.digest };
  }
  const k = digest && grads.length >= KERNEL_MIN_VALUES ? scratchKernelsHere() : null;
  if (!k) return { ss: sumOfSquares(grads) };
  const r = k.scan(grads);
  return { ss: r.sumSquares, digest: r.digest };
}

function adapter(x: unknown): AdapterInfo {
  const o = obj(x, 'hello.adapter');
  return {
    vendor: str(o, 'vendor', 'hello.adapter')!,
    architecture: str(o, 'architecture', 'hello.adapter')!,
    description: str(o, 'description', 'hello.adapter')!,
    isSoftware: typeof o.isSoftware === 'boolean' ? o.isSoftware : (() => { throw new Bad('BAD_SCHEMA', 'hello.adapter.isSoftware: expected a boolean'); })(),
  };
}

export function validateHello(x: unknown): Checked<HelloMsg> {
  return run(() => {
    const o = obj(x, 'hello');
    if (o.protocol !== PROTOCOL_VERSION) {
      throw new Bad('PROTOCOL_VERSION', `hello.protocol: ${String(o.protocol)} is not supported; this coordinator speaks protocol ${PROTOCOL_VERSION} (hint: update the worker)`);
    }
    if (o.backend !== 'cpu' && o.backend !== 'webgpu') {
      throw new Bad('BAD_SCHEMA', `hello.backend: expected "cpu" or "webgpu", got ${JSON.stringify(o.backend)?.slice(0, 40)}`);
    }
    const lim = obj(o.limits ?? {}, 'hello.limits');
    const TB = 2 ** 50;
    return {
      protocol: PROTOCOL_VERSION,
      backend: o.backend,
      adapter: adapter(o.adapter),
      limits: {
        maxBufferSize: int(lim, 'maxBufferSize', 'hello.limits', 1, TB, true),
        maxStorageBufferBindingSize: int(lim, 'maxStorageBufferBindingSize', 'hello.limits', 1, TB, true),
      },
      probedBytes: int(o, 'probedBytes', 'hello', 0, TB, true),
      userCapBytes: int(o, 'userCapBytes', 'hello', 0, TB, true),
      resumeId: str(o, 'resumeId', 'hello', MAX_TASK_ID, true),
      name: str(o, 'name', 'hello', 64, true),
      agent: str(o, 'agent', 'hello', 64, true),
      joinToken: str(o, 'joinToken', 'hello', 128, true),
    };
  });
}

export interface ResultLimits {
  /** parameterCount(model): the gradient's exact length. */
  paramCount: number;
  /**
   * Also take the replay digest in the scan (scannedDigest; the coordinator's security wants it
   * for every result): one pass for both, ~7 GB/s here against ~9.6 without the hash.
   */
  digest?: boolean;
  /**
   * Where to copy the gradient as it is scanned (the fold threads' staging slots,
   * coordinator/train/fold-threads.ts): the scan then writes the copy the fold reads in place, at
   * about the cost of the scan alone. Asked once per array, only from KERNEL_MIN_VALUES floats up
   * (the same sums and digest as without it).
   */
  stage?: GradientStager;
}

/** Where validateResult may put a copy of a gradient while scanning it (ResultLimits.stage). */
export interface StagingTarget {
  /** Kernels over the memory that receives the copy, keyed like scratchKernelsHere() (digests agree). */
  kernels: GradientKernels;
  /** Byte offset of the copy in that memory (GradientKernels.stagingOffset). */
  byteOffset: number;
}

/** A staging slot for this gradient, or null (none free: scanned without a copy). */
export type GradientStager = (grads: Float32Array) => StagingTarget | null;

/**
 * Shape, length, range and finiteness of a `result` (not the lease: see coordinator/leases.ts).
 * Scans the whole gradient for NaN/Inf: a worker's own nonFinite count is not trusted.
 */
export function validateResult(x: unknown, lim: ResultLimits): Checked<ResultMsg> {
  return run(() => {
    const o = obj(x, 'result');
    const taskId = str(o, 'taskId', 'result', MAX_TASK_ID)!;
    const step = int(o, 'step', 'result')!;
    const version = int(o, 'version', 'result')!;
    const loss = num(o, 'loss', 'result', 0, 1e4)!;
    const tokens = int(o, 'tokens', 'result', 0, 2 ** 31)!;
    const gradNorm = num(o, 'gradNorm', 'result', 0)!;
    const nonFinite = int(o, 'nonFinite', 'result', 0)!;
    const t = obj(o.timings ?? {}, 'result.timings');
    const timings = {
      totalMs: num(t, 'totalMs', 'result.timings', 0, 1e9)!,
      forwardMs: num(t, 'forwardMs', 'result.timings', 0, 1e9, true),
      backwardMs: num(t, 'backwardMs', 'result.timings', 0, 1e9, true),
      uploadMs: num(t, 'uploadMs', 'result.timings', 0, 1e9, true),
      readbackMs: num(t, 'readbackMs', 'result.timings', 0, 1e9, true),
    };
    // fp16 gradients (--compress fp16 in sync mode): `grads16` instead of `grads`, decoded here
    // (an overflow to Inf is caught by the finite scan below like any other).
    const half = o.grads16 !== undefined;
    if (half && o.grads !== undefined) throw new Bad('BAD_SCHEMA', 'result: grads and grads16 both present');
    const grads = half ? decodeHalf(typed(o, 'grads16', 'result', Uint16Array, lim.paramCount)) : typed(o, 'grads', 'result', Float32Array, lim.paramCount);
    if (nonFinite > 0) throw new Bad('NON_FINITE', `result.nonFinite: the worker reports ${nonFinite} NaN/Inf gradient values`);
    const { ss, digest, again } = scanGradient(grads, lim.digest === true, lim.stage);
    if (!Number.isFinite(ss)) {
      const bad = firstNonFinite(grads);
      throw new Bad('NON_FINITE', `result.grads[${bad}] is ${grads[bad]}`);
    }
    if (!again) measuredNorms.set(grads, Math.sqrt(ss));
    if (digest !== undefined) measuredDigests.set(grads, digest);
    return { taskId, step, version, loss, tokens, grads, gradNorm, nonFinite, timings, ...(half ? { packed: 'fp16' as const } : {}) };
  });
}

export function validateHeartbeat(x: unknown): Checked<HeartbeatMsg> {
  return run(() => {
    const o = obj(x, 'heartbeat');
    const state = o.state;
    if (state !== undefined && !['idle', 'computing', 'uploading', 'paused', 'waiting'].includes(state as string)) {
      throw new Bad('BAD_SCHEMA', 'heartbeat.state: expected idle|computing|uploading|paused|waiting');
    }
    return { t: num(o, 't', 'heartbeat')!, state: state as HeartbeatMsg['state'] };
  });
}

export function validateBye(x: unknown): Checked<ByeMsg> {
  return run(() => {
    if (x === undefined || x === null) return {};
    const o = obj(x, 'bye');
    return { reason: str(o, 'reason', 'bye', MAX_STRING, true) };
  });
}

// ------------------------------------------------- coordinator -> worker (for worker clients)

export function validateWelcome(x: unknown): Checked<WelcomeMsg> {
  return run(() => {
    const o = obj(x, 'welcome');
    if (o.protocol !== PROTOCOL_VERSION) throw new Bad('PROTOCOL_VERSION', `welcome.protocol: ${String(o.protocol)} != ${PROTOCOL_VERSION}`);
    str(o, 'workerId', 'welcome', MAX_TASK_ID);
    str(o, 'preset', 'welcome');
    const m = obj(o.model, 'welcome.model');
    for (const k of ['vocabSize', 'contextLength', 'nLayer', 'nHead', 'nEmbd']) int(m, k, 'welcome.model', 1);
    int(o, 'paramCount', 'welcome', 1);
    obj(o.plan, 'welcome.plan');
    int(o, 'heartbeatMs', 'welcome', 1);
    int(o, 'deadAfterMs', 'welcome', 1);
    int(o, 'maxMessageBytes', 'welcome', 1);
    return o as unknown as WelcomeMsg;
  });
}

export function validateParams(x: unknown, paramCount: number): Checked<ParamsMsg> {
  return run(() => {
    const o = obj(x, 'params');
    const version = int(o, 'version', 'params')!;
    const step = int(o, 'step', 'params')!;
    const params = typed(o, 'params', 'params', Float32Array, paramCount);
    return { version, step, params };
  });
}

function compress(o: Record<string, unknown>): boolean {
  if (o.compress === undefined) return false;
  if (o.compress !== 'fp16') throw new Bad('BAD_SCHEMA', "task.compress: expected 'fp16' or absent");
  return true;
}

/** task.dpo (--objective dpo): B even (pairs of rows), beta > 0, B reference log-probs <= 0. */
function taskDpo(o: Record<string, unknown>, B: number): TaskDpo | undefined {
  if (o.dpo === undefined) return undefined;
  const d = obj(o.dpo, 'task.dpo');
  if (B % 2 !== 0) throw new Bad('BAD_LENGTH', `task.B: ${B} rows, a preference task has 2 per pair`);
  const beta = num(d, 'beta', 'task.dpo', 0, 1e6);
  if (!(beta > 0)) throw new Bad('OUT_OF_RANGE', 'task.dpo.beta: must be > 0');
  const refLogProbs = typed(d, 'refLogProbs', 'task.dpo', Float32Array, B);
  for (let i = 0; i < B; i++) {
    if (!Number.isFinite(refLogProbs[i])) throw new Bad('NON_FINITE', `task.dpo.refLogProbs[${i}]: not finite`);
    if (refLogProbs[i] > 1e-3) throw new Bad('OUT_OF_RANGE', `task.dpo.refLogProbs[${i}]: ${refLogProbs[i]} is not a log-probability`);
  }
  return { beta, refLogProbs };
}

export function validateTask(x: unknown, model: ModelConfig): Checked<TaskMsg> {
  return run(() => {
    const o = obj(x, 'task');
    const B = int(o, 'B', 'task', 1)!;
    const T = int(o, 'T', 'task', 1, model.contextLength)!;
    const inputs = typed(o, 'inputs', 'task', Int32Array, B * T);
    const targets = typed(o, 'targets', 'task', Int32Array, B * T);
    const mask = typed(o, 'mask', 'task', Uint8Array, B * T);
    for (let i = 0; i < B * T; i++) {
      if (inputs[i] < 0 || inputs[i] >= model.vocabSize || targets[i] < 0 || targets[i] >= model.vocabSize) {
        throw new Bad('OUT_OF_RANGE', `task: token id at ${i} outside [0, ${model.vocabSize})`);
      }
    }
    const dpo = taskDpo(o, B);
    return {
      taskId: str(o, 'taskId', 'task', MAX_TASK_ID)!,
      step: int(o, 'step', 'task')!,
      version: int(o, 'version', 'task')!,
      B,
      T,
      inputs,
      targets,
      mask,
      tokens: int(o, 'tokens', 'task')!,
      sampleIds: typed(o, 'sampleIds', 'task', Uint32Array, dpo ? B / 2 : B),
      leaseMs: int(o, 'leaseMs', 'task', 1)!,
      ...(compress(o) ? { compress: 'fp16' as const } : {}),
      ...(dpo ? { dpo } : {}),
    };
  });
}
