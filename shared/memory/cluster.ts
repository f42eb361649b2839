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
import { bytesPerParam, TRAIN_STATE_BYTES_PER_PARAM, ruleBreakdown } from './rules.ts';
import type { Assignment, ClusterOptions, ClusterPlan, DataParallelUnit, StagePlan } from './cluster-types.ts';
import { estimateStep } from './step-estimate.ts';

import { bytes, formatBytes } from './units.ts';

// The plan's types live in a leaf module (step-estimate.ts and replan.ts use them too).
export type * from './cluster-types.ts';

export const DEFAULT_GLOBAL_BATCH = 64;
export const DEFAULT_COORDINATOR_LINK_BPS = 1e9;

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
