// Cluster plan for uneven devices (issue 7): which devices are data-parallel replicas (hold the
// whole model), which form pipelines of contiguous stages, which are left out and why, what each
// holds in bytes, and an estimated step time. Sizes follow the same rules as planWorker: training
// 20 B/param (one device holds floor(memory / 20) params), inference bytes/param of the precision.
//
// Pipelines: devices too small for a replica are taken largest first until together they hold one
// copy; the model's units (ends, then blocks) are cut into contiguous stages in proportion to each
// device's capacity (balanced by the 20-byte rule), never above it; if the proportional cut does not
// fit, a greedy fill is tried, and if that fails too, the next device joins the group.

import { AppError } from '../errors.ts';
import type { Device } from './devices.ts';
import type { ModelShape } from './model-shape.ts';
import { fitMicroBatch, WEBGPU_DEFAULT_LIMITS } from './plan.ts';
import { bytesPerParam, TRAIN_STATE_BYTES_PER_PARAM, type Breakdown, type Mode, type Precision, ruleBreakdown } from './rules.ts';
import { bytes, formatBytes, formatDuration, type Bytes } from './units.ts';

export interface ClusterOptions {
  mode: Mode;
  precision: Precision;
  /** Tokens per sequence for the step estimate; default the context length (1024 for a bare count). */
  seq?: number;
  /** Sequences per optimizer step across the cluster; default 64. */
  globalBatch?: number;
  /** The coordinator's own link, bits/s; default 1 Gbps. */
  coordinatorLinkBps?: number;
  /** Adapter limits assumed for every device (WebGPU defaults otherwise), for the micro-batch check. */
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
}

export const DEFAULT_GLOBAL_BATCH = 64;
export const DEFAULT_COORDINATOR_LINK_BPS = 1e9;

export type AssignmentRole = 'replica' | 'stage' | 'unassigned';

export interface Assignment {
  device: number;
  spec: string;
  memoryBytes: number;
  gflops: number;
  linkBps: number;
  role: AssignmentRole;
  /** Index of the data-parallel unit (a replica or a pipeline) it belongs to. */
  unit?: number;
  /** Stage index inside its pipeline. */
  stage?: number;
  /** Blocks [start, end) it holds (replica: all). */
  layerRange?: [number, number];
  /** Holds the ends unit (embeddings, tied head, ln_f), or for a bare count nothing extra. */
  holdsEnds?: boolean;
  params: number;
  /** params x bytes/param. */
  bytes: number;
  breakdown: Breakdown;
  /** bytes / memoryBytes. */
  usedShare: number;
  /**
   * Training with a known config: the micro-batch (sequences) and sequence length whose explicit
   * activations fit beside 16 B/param of state and under the binding limit (0 = not even one token).
   */
  microBatch?: number;
  seqLen?: number;
  reason: string;
}

export interface StagePlan {
  pipeline: number;
  stage: number;
  device: number;
  layerRange: [number, number];
  holdsEnds: boolean;
  /** Model unit indices [start, end) (unit 0 = ends when the config is known). */
  unitRange: [number, number];
  params: number;
  bytes: number;
}

export interface DataParallelUnit {
  index: number;
  kind: 'replica' | 'pipeline';
  devices: number[];
  /** Compute-only throughput of this unit, tokens/s. */
  tokensPerSec: number;
  /** Used in the step estimate (false: a spare that would slow the step). */
  active?: boolean;
}

export interface StepEstimate {
  seq: number;
  globalBatch: number;
  tokensPerStep: number;
  /** FLOPs per token: 6 x params (train) or 2 x params (infer forward). */
  flopsPerToken: number;
  /** Data-parallel units the estimate uses (the fastest ones; see arithmetic). */
  activeUnits: number;
  computeSeconds: number;
  transferSeconds: number;
  stepSeconds: number;
  tokensPerSec: number;
  /** The arithmetic, one line each. */
  arithmetic: string[];
}

export interface ClusterPlan {
  devices: number;
  capacityBytes: number;
  capacity: Bytes;
  /** Bytes one full copy of the model needs under the rule. */
  neededBytes: number;
  needed: Bytes;
  fits: boolean;
  replicas: number;
  pipelines: number;
  stages: StagePlan[];
  unassigned: Array<{ device: number; spec: string; reason: string }>;
  assignments: Assignment[];
  units: DataParallelUnit[];
  step: StepEstimate | null;
  reason: string;
  unit: 'bytes';
}

interface Slot { device: Device; cap: number }

/** Cuts units into contiguous runs, one per slot, each within its capacity; null if impossible. */
function cutStages(units: number[], slots: Slot[]): Array<[number, number]> | null {
  const total = units.reduce((a, b) => a + b, 0);
  const capSum = slots.reduce((a, s) => a + s.cap, 0);
  if (capSum < total) return null;
  const tryCut = (proportional: boolean): Array<[number, number]> | null => {
    const cuts: Array<[number, number]> = [];
    let u = 0;
    let acc = 0;
    let cumCap = 0;
    for (let i = 0; i < slots.length; i++) {
      cumCap += slots[i].cap;
      const target = proportional ? (total * cumCap) / capSum : Infinity;
      const start = u;
      let held = 0;
      const last = i === slots.length - 1;
      while (u < units.length && held + units[u] <= slots[i].cap && (last || acc + units[u] / 2 <= target)) {
        held += units[u];
        acc += units[u];
        u++;
      }
      cuts.push([start, u]);
    }
    return u === units.length ? cuts : null;
  };
  return tryCut(true) ?? tryCut(false);
}

function checkOptions(o: ClusterOptions, shape: ModelShape): { seq: number; globalBatch: number; coordLink: number } {
  const seq = o.seq ?? shape.config?.contextLength ?? 1024;
  const globalBatch = o.globalBatch ?? DEFAULT_GLOBAL_BATCH;
  const coordLink = o.coordinatorLinkBps ?? DEFAULT_COORDINATOR_LINK_BPS;
  if (!Number.isInteger(seq) || seq < 1) throw new AppError('ERR_MEMORY_CLUSTER', `cluster plan: seq must be a positive integer, got ${seq}`);
  if (!Number.isInteger(globalBatch) || globalBatch < 1) {
    throw new AppError('ERR_MEMORY_CLUSTER', `cluster plan: globalBatch must be a positive integer, got ${globalBatch}`);
  }
  if (!(coordLink > 0)) throw new AppError('ERR_MEMORY_CLUSTER', `cluster plan: coordinatorLinkBps must be > 0`);
  return { seq, globalBatch, coordLink };
}

/**
 * Plans `devices` for `shape`. With `keep` (a previous plan), every replica and pipeline whose
 * devices are all still present is kept as it was, so churn only re-plans what it broke.
 */
export function planCluster(shape: ModelShape, devices: Device[], o: ClusterOptions, keep?: ClusterPlan): ClusterPlan {
  const { seq, globalBatch, coordLink } = checkOptions(o, shape);
  const bpp = bytesPerParam(o.mode, o.precision);
  const P = shape.params;
  const unitParams = shape.units.map((u) => u.params);
  const hasEnds = shape.units[0]?.layer === -1;
  const smallestUnit = Math.min(...unitParams);
  const cap = (d: Device) => Math.floor(d.memoryBytes / bpp);
  const rangeOf = (ur: [number, number]): [number, number] => hasEnds
    ? [Math.max(ur[0], 1) - 1, Math.max(ur[1], 1) - 1] : [ur[0], ur[1]];
  const sorted = [...devices].sort((a, b) => b.memoryBytes - a.memoryBytes || a.id - b.id);

  const assignments = new Map<number, Assignment>();
  const base = (d: Device) => ({ device: d.id, spec: d.spec, memoryBytes: d.memoryBytes, gflops: d.gflops, linkBps: d.linkBps });
  const held = (d: Device, params: number) => {
    const b = params * bpp;
    return { params, bytes: b, breakdown: ruleBreakdown(params, o.mode, o.precision), usedShare: b / d.memoryBytes };
  };
  const units: DataParallelUnit[] = [];
  const stages: StagePlan[] = [];

  const kept = new Set<number>();
  if (keep) {
    const present = new Map(devices.map((d) => [d.id, d]));
    const oldAssign = new Map(keep.assignments.map((a) => [a.device, a]));
    const oldStage = new Map(keep.stages.map((x) => [x.device, x]));
    for (const u of keep.units) {
      if (!u.devices.every((id) => present.has(id))) continue;
      const index = units.length;
      units.push({ index, kind: u.kind, devices: [...u.devices], tokensPerSec: 0 });
      for (const id of u.devices) {
        const d = present.get(id)!;
        const old = oldAssign.get(id)!;
        kept.add(id);
        if (u.kind === 'replica') {
          assignments.set(id, { ...old, ...base(d), unit: index, ...held(d, P) });
        } else {
          const st = oldStage.get(id)!;
          stages.push({ ...st, pipeline: index });
          assignments.set(id, { ...old, ...base(d), unit: index, ...held(d, st.params),
            reason: old.reason.replace(/pipeline \d+/, `pipeline ${index}`) });
        }
      }
    }
  }

  const rest: Device[] = [];
  for (const d of sorted) {
    if (kept.has(d.id)) continue;
    if (cap(d) >= P) {
      const index = units.length;
      units.push({ index, kind: 'replica', devices: [d.id], tokensPerSec: 0 });
      assignments.set(d.id, {
        ...base(d), role: 'replica', unit: index, layerRange: [0, shape.nLayer], holdsEnds: true, ...held(d, P),
        reason: `holds the whole model: ${formatBytes(d.memoryBytes)} >= ${P.toLocaleString('en-US')} params x ${bpp} B = ${formatBytes(P * bpp)}`,
      });
    } else if (cap(d) >= smallestUnit) {
      rest.push(d);
    } else {
      assignments.set(d.id, {
        ...base(d), role: 'unassigned', ...held(d, 0),
        reason: `too small: one ${hasEnds ? 'block' : 'layer'} of ${smallestUnit.toLocaleString('en-US')} params needs ${formatBytes(smallestUnit * bpp)}, it has ${formatBytes(d.memoryBytes)}`,
      });
    }
  }

  // Pipelines from the rest, largest devices first.
  let next = 0;
  while (next < rest.length) {
    const group: Slot[] = [];
    let sum = 0;
    let cuts: Array<[number, number]> | null = null;
    let k = next;
    while (k < rest.length) {
      group.push({ device: rest[k], cap: cap(rest[k]) });
      sum += cap(rest[k]);
      k++;
      if (sum >= P && (cuts = cutStages(unitParams, group))) break;
    }
    if (!cuts) break;
    const index = units.length;
    const members: number[] = [];
    let stage = 0;
    for (let i = 0; i < group.length; i++) {
      const d = group[i].device;
      const ur = cuts[i];
      if (ur[1] === ur[0]) {
        // Held nothing in this cut: give it back to the pool.
        rest.splice(k, 0, d);
        continue;
      }
      const params = unitParams.slice(ur[0], ur[1]).reduce((a, b) => a + b, 0);
      const layerRange = rangeOf(ur);
      const holdsEnds = hasEnds && ur[0] === 0;
      members.push(d.id);
      stages.push({ pipeline: index, stage, device: d.id, layerRange, holdsEnds, unitRange: ur, params, bytes: params * bpp });
      assignments.set(d.id, {
        ...base(d), role: 'stage', unit: index, stage, layerRange, holdsEnds, ...held(d, params),
        reason: `stage ${stage} of pipeline ${index}: blocks [${layerRange[0]}, ${layerRange[1]})${holdsEnds ? ' + embeddings/tied head/ln_f' : ''}, ${params.toLocaleString('en-US')} params x ${bpp} B = ${formatBytes(params * bpp)} of its ${formatBytes(d.memoryBytes)}`,
      });
      stage++;
    }
    units.push({ index, kind: 'pipeline', devices: members, tokensPerSec: 0 });
    next = k;
  }
  const leftover = rest.slice(next).filter((d) => !assignments.has(d.id));
  const leftoverCap = leftover.reduce((a, d) => a + cap(d), 0);
  for (const d of leftover) {
    assignments.set(d.id, {
      ...base(d), role: 'unassigned', ...held(d, 0),
      reason: `left over: the ${leftover.length} remaining small device(s) hold ${leftoverCap.toLocaleString('en-US')} params together, less than one copy (${P.toLocaleString('en-US')} params, ${formatBytes(P * bpp)})`,
    });
  }

  // Activations check (train, config known): what micro-batch x seq each assigned device can run.
  if (o.mode === 'train' && shape.config) {
    const c = shape.config;
    const bindCap = Math.min(o.maxStorageBufferBindingSize ?? WEBGPU_DEFAULT_LIMITS.maxStorageBufferBindingSize,
      o.maxBufferSize ?? WEBGPU_DEFAULT_LIMITS.maxBufferSize);
    const seqWanted = Math.min(seq, c.contextLength);
    for (const a of assignments.values()) {
      if (a.role === 'unassigned' || !a.layerRange) continue;
      const layers = a.layerRange[1] - a.layerRange[0];
      const left = a.memoryBytes - TRAIN_STATE_BYTES_PER_PARAM * a.params;
      const fit = fitMicroBatch(c, left, bindCap, seqWanted, layers, a.holdsEnds ?? false, Infinity);
      a.microBatch = fit?.microBatch ?? 0;
      a.seqLen = fit?.seqLen ?? 0;
    }
  }

  const byId = new Map(devices.map((d) => [d.id, d]));
  const step = units.length > 0 ? estimateStep(shape, o, units, stages, byId, seq, globalBatch, coordLink) : null;
  const capacityBytes = devices.reduce((a, d) => a + d.memoryBytes, 0);
  const list = devices.map((d) => assignments.get(d.id)!);
  const unassigned = list.filter((a) => a.role === 'unassigned').map((a) => ({ device: a.device, spec: a.spec, reason: a.reason }));
  const replicas = units.filter((u) => u.kind === 'replica').length;
  const pipelines = units.length - replicas;
  const need = P * bpp;
  const fits = units.length > 0;
  const reason = fits
    ? `${replicas} replica(s) and ${pipelines} pipeline(s) of ${stages.length} stage(s) each hold one copy of ${formatBytes(need)}; ${unassigned.length} device(s) unassigned`
    : capacityBytes < need
      ? `does not fit: the devices hold ${formatBytes(capacityBytes)} together, one copy needs ${formatBytes(need)} (${P.toLocaleString('en-US')} params x ${bpp} B)`
      : `does not fit: ${formatBytes(capacityBytes)} in all would be enough, but stages hold whole ${hasEnds ? 'blocks (and stage 0 the embeddings)' : 'layers'}: the devices can hold ${devices.reduce((a, d) => a + Math.floor(cap(d) / Math.max(...unitParams)), 0)} of the ${unitParams.length} units of ~${formatBytes(Math.max(...unitParams) * bpp)} each`;
  return {
    devices: devices.length, capacityBytes, capacity: bytes(capacityBytes), neededBytes: need, needed: bytes(need), fits,
    replicas, pipelines, stages, unassigned, assignments: list, units, step, reason, unit: 'bytes',
  };
}

function width(shape: ModelShape): number {
  return shape.config?.nEmbd ?? Math.round(Math.cbrt((shape.params * 128) / 12));
}

function estimateStep(
  shape: ModelShape, o: ClusterOptions, units: DataParallelUnit[], stages: StagePlan[], byId: Map<number, Device>,
  seq: number, globalBatch: number, coordLink: number,
): StepEstimate {
  const P = shape.params;
  const train = o.mode === 'train';
  const flopsPerParamToken = train ? 6 : 2;
  const flopsPerToken = flopsPerParamToken * P;
  const tokensPerStep = seq * globalBatch;
  // Activations crossing a stage boundary per token: the hidden state forward (and its gradient backward), fp32.
  const boundaryBits = width(shape) * 4 * 8 * (train ? 2 : 1);
  const byPipeline = new Map<number, StagePlan[]>();
  for (const st of stages) {
    if (!byPipeline.has(st.pipeline)) byPipeline.set(st.pipeline, []);
    byPipeline.get(st.pipeline)!.push(st);
  }
  for (const l of byPipeline.values()) l.sort((a, b) => a.stage - b.stage);
  for (const u of units) {
    if (u.kind === 'replica') {
      u.tokensPerSec = (byId.get(u.devices[0])!.gflops * 1e9) / flopsPerToken;
    } else {
      // Naive pipeline (one micro-batch in flight): stages run one after another, plus each boundary's transfer,
      // including the last stage sending its output back to stage 0 for the tied head.
      const own = byPipeline.get(u.index) ?? [];
      let secPerToken = 0;
      for (let i = 0; i < own.length; i++) {
        const d = byId.get(own[i].device)!;
        secPerToken += (flopsPerParamToken * own[i].params) / (d.gflops * 1e9);
        const nextDev = byId.get(own[(i + 1) % own.length].device)!;
        if (own.length > 1) secPerToken += boundaryBits / Math.min(d.linkBps, nextDev.linkBps);
      }
      u.tokensPerSec = 1 / secPerToken;
    }
  }
  // Per unit: what it sends (gradients, 4 B/param) and receives (new weights, 4 B/param) each step.
  const stageParams = new Map(stages.map((s) => [s.device, s.params]));
  const comm = new Map<number, { bits: number; worst: number; worstId: number }>();
  for (const u of units) {
    let bits = 0;
    let worst = 0;
    let worstId = u.devices[0];
    for (const id of u.devices) {
      const d = byId.get(id)!;
      const b = (u.kind === 'replica' ? P : stageParams.get(id)!) * 4 * 8;
      bits += b;
      const t = train ? (2 * b) / d.linkBps : 0;
      if (t > worst) { worst = t; worstId = id; }
    }
    comm.set(u.index, { bits: train ? bits : 0, worst, worstId });
  }
  // Use the k fastest units that minimise the step: past some k the coordinator's link is the
  // bottleneck and another unit only adds transfer; the rest stand by as spares (useful under churn).
  const order = [...units].sort((a, b) => b.tokensPerSec - a.tokensPerSec || a.index - b.index);
  let best = { k: 0, step: Infinity, compute: 0, transfer: 0, tps: 0, worst: 0, worstId: -1, bits: 0 };
  let tps = 0;
  let bits = 0;
  let worst = 0;
  let worstId = -1;
  for (let k = 1; k <= order.length; k++) {
    const u = order[k - 1];
    const c = comm.get(u.index)!;
    tps += u.tokensPerSec;
    bits += c.bits;
    if (c.worst > worst) { worst = c.worst; worstId = c.worstId; }
    const compute = tokensPerStep / tps;
    const transfer = Math.max(worst, (2 * bits) / coordLink);
    if (compute + transfer < best.step * (1 - 1e-9)) best = { k, step: compute + transfer, compute, transfer, tps, worst, worstId, bits };
  }
  const active = new Set(order.slice(0, best.k).map((u) => u.index));
  for (const u of units) u.active = active.has(u.index);
  const computeSeconds = best.compute;
  const transferSeconds = best.transfer;
  const arithmetic = [
    `tokens per step = ${globalBatch} sequences x ${seq} = ${tokensPerStep.toLocaleString('en-US')}`,
    `compute = ${flopsPerParamToken} x ${P.toLocaleString('en-US')} params x ${tokensPerStep.toLocaleString('en-US')} tokens / ${(best.tps * flopsPerToken / 1e9).toFixed(0)} GFLOP/s effective over ${best.k} unit(s) (tasks split by throughput) = ${formatDuration(computeSeconds)}`,
  ];
  if (train) {
    const coord = (2 * best.bits) / coordLink;
    arithmetic.push(
      `transfer = max(slowest device: 2 x its params x 4 B over its link = ${formatDuration(best.worst)} (device ${best.worstId}), coordinator: 2 x ${formatBytes(best.bits / 8)} over ${(coordLink / 1e6).toFixed(0)} Mbps = ${formatDuration(coord)}) = ${formatDuration(transferSeconds)}`,
    );
  }
  if (best.k < units.length) {
    arithmetic.push(`${units.length - best.k} of ${units.length} unit(s) stand by as spares: adding them would lengthen the step (their transfer costs more than their compute saves)`);
  }
  const stepSeconds = computeSeconds + transferSeconds;
  arithmetic.push(`step = ${formatDuration(computeSeconds)} + ${formatDuration(transferSeconds)} = ${formatDuration(stepSeconds)}; ${(tokensPerStep / stepSeconds).toFixed(0)} tokens/s`);
  return {
    seq, globalBatch, tokensPerStep, flopsPerToken, activeUnits: best.k, computeSeconds, transferSeconds, stepSeconds,
    tokensPerSec: tokensPerStep / stepSeconds, arithmetic,
  };
}

export interface ChurnChange {
  leave?: number[];
  join?: Device[];
}

export interface ReplanResult {
  removed: number[];
  added: number[];
  after: ClusterPlan;
  /** Per device, the params it must newly receive (weights + Adam moments when training). */
  moves: Array<{ device: number; params: number; bytes: number; why: string }>;
  movedBytes: number;
  moved: Bytes;
  bytesPerParamMoved: number;
  reason: string;
}

/** Model unit ranges [start, end) each assigned device holds in a plan. */
export function heldUnitRanges(plan: ClusterPlan, shape: ModelShape): Map<number, [number, number]> {
  const m = new Map<number, [number, number]>();
  for (const a of plan.assignments) if (a.role === 'replica') m.set(a.device, [0, shape.units.length]);
  for (const st of plan.stages) m.set(st.device, st.unitRange);
  return m;
}

/** Params a device must newly receive going from range `old` to range `now`. */
export function newlyHeldParams(shape: ModelShape, old: [number, number] | undefined, now: [number, number] | undefined): number {
  if (!now) return 0;
  let params = 0;
  for (let i = now[0]; i < now[1]; i++) if (!old || i < old[0] || i >= old[1]) params += shape.units[i].params;
  return params;
}

/** Bytes moved per newly held param: weights + Adam moments when training (gradients and activations are rebuilt). */
export function movedBytesPerParam(o: ClusterOptions): number {
  return o.mode === 'train' ? 12 : bytesPerParam(o.mode, o.precision);
}

/**
 * A device leaves and/or joins: the new plan, and the bytes that must move to the devices that
 * now hold model units they did not hold before. Training moves weights and Adam moments (12 B/param;
 * gradients and activations are rebuilt); inference moves the weights.
 */
export function replanCluster(shape: ModelShape, devices: Device[], before: ClusterPlan, change: ChurnChange, o: ClusterOptions): ReplanResult {
  const leave = change.leave ?? [];
  const ids = new Set(devices.map((d) => d.id));
  for (const id of leave) {
    if (!ids.has(id)) {
      throw new AppError('ERR_MEMORY_CLUSTER', `replan: no device ${id} to leave (devices are 0..${devices.length - 1})`, 400, 'pick ids from the plan\'s assignments');
    }
  }
  let nextId = devices.reduce((m, d) => Math.max(m, d.id), -1) + 1;
  const joined = (change.join ?? []).map((d) => ({ ...d, id: nextId++ }));
  const after = [...devices.filter((d) => !leave.includes(d.id)), ...joined];
  const plan = planCluster(shape, after, o, before);
  const perParam = movedBytesPerParam(o);
  const moves: ReplanResult['moves'] = [];
  const oldHeld = heldUnitRanges(before, shape);
  const nowHeld = heldUnitRanges(plan, shape);
  for (const d of after) {
    const old = oldHeld.get(d.id);
    const params = newlyHeldParams(shape, old, nowHeld.get(d.id));
    if (params > 0) {
      moves.push({ device: d.id, params, bytes: params * perParam, why: old ? 'its range changed' : 'newly assigned' });
    }
  }
  const movedBytes = moves.reduce((a, m) => a + m.bytes, 0);
  return {
    removed: leave, added: joined.map((d) => d.id), after: plan, moves, movedBytes, moved: bytes(movedBytes), bytesPerParamMoved: perParam,
    reason: `${leave.length} left, ${joined.length} joined: ${plan.fits ? 'still fits' : 'no longer fits'} (${plan.replicas} replica(s), ${plan.pipelines} pipeline(s)); ${moves.length} device(s) receive ${formatBytes(movedBytes)} (${perParam} B per newly held param)`,
  };
}
