// The engine's memory plan for one (B,T): every GPU buffer the step uses, its size, and the
// checks against the device's limits. Computed without allocating anything, so the planner and
// the docs can ask "would this fit?" and a too-large request fails with the tensor's name.
//
// Parameters and gradients live in ONE buffer each, in the parameter table's order but with every
// tensor's start rounded up to minStorageBufferOffsetAlignment so each tensor can be bound on its
// own; the padding stays zero (it never enters the gradient norm). A pipeline stage's engine holds
// only its stage table (shared/model/stage.ts), padded the same way; the whole model is the stage
// [0, L), whose table is the parameter table.

import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { buildStageTable, type StageSpec } from '../../shared/model/stage.ts';

export interface DeviceLimitsLike {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  minStorageBufferOffsetAlignment: number;
  /** Attention keeps one score row (T floats) in workgroup memory. Default 16 KiB. */
  maxComputeWorkgroupStorageSize?: number;
}

/** What a padded layout needs of a table: the parameter table and a stage table both qualify. */
export interface LayoutTable {
  tensors: Array<{ name: string; size: number; offset: number; shape: number[] }>;
  total: number;
}

export interface PaddedLayout {
  table: LayoutTable;
  /** Float offset of each tensor (table order) in the padded buffer. */
  offsets: number[];
  /** Total floats including padding. */
  floats: number;
}

export function paddedLayout(table: LayoutTable, alignBytes: number): PaddedLayout {
  const align = Math.max(1, alignBytes / 4);
  const offsets: number[] = [];
  let off = 0;
  for (const t of table.tensors) {
    off = Math.ceil(off / align) * align;
    offsets.push(off);
    off += t.size;
  }
  return { table, offsets, floats: Math.ceil(off / align) * align };
}

export interface PlannedBuffer {
  name: string;
  /** Shape for messages, e.g. "[L=3][N=32, 3C=144]". */
  shape: string;
  bytes: number;
  /** How many of these exist (per-layer tensors). */
  count: number;
}

export interface EnginePlan {
  B: number;
  T: number;
  /** Parameters + gradients (padded), bytes. */
  paramBytes: number;
  gradBytes: number;
  activationBytes: number;
  scratchBytes: number;
  totalBytes: number;
  buffers: PlannedBuffer[];
}

/** [M, N, K] of the weight-gradient products dW = X^T dY (the split-K candidates), in step order; the LM head's only with `head`. */
export function weightGradShapes(config: ModelConfig, B: number, T: number, head = true): Array<[number, number, number]> {
  const { vocabSize: V, nEmbd: C } = config;
  const N = B * T;
  const blocks: Array<[number, number, number]> = [[4 * C, C, N], [C, 4 * C, N], [C, C, N], [C, 3 * C, N]];
  return head ? [[V, C, N], ...blocks] : blocks;
}

/** Floats of the split-K scratch: the largest S*M*N over the weight-gradient products. */
export function splitKScratchFloats(config: ModelConfig, B: number, T: number, splitK: (M: number, N: number, K: number) => number, head = true): number {
  let max = 0;
  for (const [M, N, K] of weightGradShapes(config, B, T, head)) {
    const S = splitK(M, N, K);
    if (S > 1) max = Math.max(max, S * M * N);
  }
  return max;
}

/** The device's kernel-choice policy as far as memory is concerned (KernelRuntime implements it). */
export interface PlanPolicy {
  splitK(M: number, N: number, K: number): number;
  twoPassColumns(N: number): boolean;
}
const NO_POLICY: PlanPolicy = { splitK: () => 1, twoPassColumns: () => false };

/** Floats of the column-reduction partials: ceil(N / COL_BLOCK) rows of up to 4C. */
export function columnScratchFloats(config: ModelConfig, B: number, T: number, policy: PlanPolicy): number {
  const N = B * T;
  return policy.twoPassColumns(N) ? Math.ceil(N / 256) * 4 * config.nEmbd : 0;
}

/**
 * Builds the plan and throws ERR_ENGINE_PLAN naming the first tensor that cannot be bound or
 * allocated. `policy` is the device's kernel policy (split-K, two-pass columns); default neither.
 * `spec`: the plan of a pipeline stage's engine (blocks [from, to)); default the whole model.
 */
export function planEngine(config: ModelConfig, B: number, T: number, limits: DeviceLimitsLike,
  policy: PlanPolicy = NO_POLICY, spec?: StageSpec): EnginePlan {
  const splitK = (m: number, n: number, k: number) => policy.splitK(m, n, k);
  const { vocabSize: V, nHead: NH, nEmbd: C } = config;
  const N = B * T;
  const table = spec ? buildStageTable(config, spec) : buildParameterTable(config);
  const L = spec ? spec.to - spec.from : config.nLayer;
  const head = !spec || spec.to === config.nLayer;
  const layout = paddedLayout(table, limits.minStorageBufferOffsetAlignment);
  const bindMax = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const fail = (what: string, bytes: number, limitName: string, limit: number, hint: string): never => {
    throw new AppError('ERR_ENGINE_PLAN',
      `webgpu engine plan (B=${B}, T=${T}): ${what} needs ${bytes} bytes, over ${limitName} = ${limit}`, 400, hint);
  };
  for (const t of table.tensors) {
    if (t.size * 4 > bindMax) {
      fail(`parameter ${t.name} [${t.shape.join(', ')}]`, t.size * 4, 'the storage binding limit', bindMax,
        'this model is too large for this device; choose a smaller preset or a device with larger bindings');
    }
  }
  const paramBytes = layout.floats * 4;
  if (paramBytes > limits.maxBufferSize) {
    fail('the parameter buffer', paramBytes, 'maxBufferSize', limits.maxBufferSize, 'choose a smaller model for this device');
  }
  // Attention keeps a row of T scores plus a 64-float reduction array in workgroup memory.
  const wgMax = limits.maxComputeWorkgroupStorageSize ?? 16384;
  const attWg = (T + 64) * 4;
  if (attWg > wgMax) {
    fail(`attention's score row (T=${T} floats in workgroup memory)`, attWg, 'maxComputeWorkgroupStorageSize', wgMax,
      `use sequences of at most ${Math.floor(wgMax / 4) - 64} tokens on this device`);
  }
  const f = 4;
  const acts: PlannedBuffer[] = [
    { name: spec && spec.from > 0 ? 'stage_input' : 'encoded', shape: `[N=${N}, C=${C}]`, bytes: N * C * f, count: 1 },
    { name: 'ln1', shape: `[N, C]`, bytes: N * C * f, count: L },
    { name: 'ln1_mean', shape: `[N]`, bytes: N * f, count: L },
    { name: 'ln1_rstd', shape: `[N]`, bytes: N * f, count: L },
    { name: 'qkv', shape: `[N, 3C]`, bytes: N * 3 * C * f, count: L },
    { name: 'atty', shape: `[N, C]`, bytes: N * C * f, count: L },
    { name: 'att', shape: `[B, NH, T, T]`, bytes: B * NH * T * T * f, count: L },
    { name: 'res2', shape: `[N, C]`, bytes: N * C * f, count: L },
    { name: 'ln2', shape: `[N, C]`, bytes: N * C * f, count: L },
    { name: 'ln2_mean', shape: `[N]`, bytes: N * f, count: L },
    { name: 'ln2_rstd', shape: `[N]`, bytes: N * f, count: L },
    { name: 'fch', shape: `[N, 4C]`, bytes: N * 4 * C * f, count: L },
    { name: 'fch_gelu', shape: `[N, 4C]`, bytes: N * 4 * C * f, count: L },
    { name: 'res3', shape: `[N, C]`, bytes: N * C * f, count: L },
    ...(head ? [
      { name: 'lnf', shape: `[N, C]`, bytes: N * C * f, count: 1 },
      { name: 'lnf_mean', shape: `[N]`, bytes: N * f, count: 1 },
      { name: 'lnf_rstd', shape: `[N]`, bytes: N * f, count: 1 },
      { name: 'logits', shape: `[N, V=${V}]`, bytes: N * V * f, count: 1 },
      { name: 'losses', shape: `[N]`, bytes: N * f, count: 1 },
    ] : []),
  ];
  const scratch: PlannedBuffer[] = [
    { name: 'dres', shape: `[N, C]`, bytes: N * C * f, count: 1 },
    { name: 'dbuf', shape: `[N, C]`, bytes: N * C * f, count: 1 },
    { name: 'dqkv', shape: `[N, 3C]`, bytes: N * 3 * C * f, count: 1 },
    { name: 'dfch', shape: `[N, 4C]`, bytes: N * 4 * C * f, count: 1 },
    { name: 'dpreatt', shape: `[B, NH, T, T]`, bytes: B * NH * T * T * f, count: 1 },
    { name: 'inputs+targets+mask+index', shape: `[4N + V + 1]`, bytes: (4 * N + V + 1) * 4, count: 1 },
    { name: 'split-K partials', shape: `[S, M, N] (largest dW product)`, bytes: splitKScratchFloats(config, B, T, splitK, head) * 4, count: 1 },
    { name: 'column partials', shape: `[N/256, 4C]`, bytes: columnScratchFloats(config, B, T, policy) * 4, count: 1 },
    { name: 'norm partials', shape: `[2 * P/4096]`, bytes: 2 * Math.ceil(layout.floats / 4096) * 4, count: 1 },
  ];
  for (const b of [...acts, ...scratch]) {
    if (b.bytes > bindMax) {
      fail(`activation ${b.name} ${b.shape}`, b.bytes, 'the storage binding limit', bindMax,
        `use a smaller micro-batch (B*T = ${N} now) or shorter sequences`);
    }
  }
  const sum = (xs: PlannedBuffer[]) => xs.reduce((s, b) => s + b.bytes * b.count, 0);
  const activationBytes = sum(acts);
  const scratchBytes = sum(scratch);
  return {
    B, T, paramBytes, gradBytes: paramBytes, activationBytes, scratchBytes,
    totalBytes: 2 * paramBytes + activationBytes + scratchBytes,
    buffers: [...acts, ...scratch],
  };
}
