// Cluster plan for uneven devices (issue 7, issue 12): which devices are data-parallel replicas
// (hold the whole model), which form pipelines of contiguous stages, which are left out and why,
// what each holds in bytes, and an estimated step time.
//
// With a model config, both come from the functions the live coordinator uses, so `npm run
// simulate` and the live plan agree on the same inputs: a device is a replica when planWorker()
// says so at the full sequence length (training; inference: its weights fit), and the rest go to formPipelines()
// (pipeline-plan.ts: first stage wte + wpe + blocks [0, a), last blocks [b, L) + ln_f + its own
// copy of the tied wte, 20 B/param + activations, balanced by speed). A device's speed is its
// GFLOP/s on the whole model's 6 x params FLOPs per token.
// From a bare parameter count (no config, equal layers, no ends): devices too small for a replica
// are taken largest first until together they hold one copy, and the layers are cut into
// contiguous stages in proportion to each device's capacity, never above it; if the proportional
// cut does not fit, a greedy fill is tried, and if that fails too, the next device joins the group.

import { AppError } from '../errors.ts';
import type { Device } from './devices.ts';
import type { ModelShape } from './model-shape.ts';
import { formPipelines } from './pipeline-plan.ts';
import { planWorker } from './plan.ts';
import { bytesPerParam, ruleBreakdown } from './rules.ts';
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
  const c = shape.config;
  const train = o.mode === 'train';
  const unitParams = shape.units.map((u) => u.params);
  const smallestUnit = Math.min(...unitParams);
  const cap = (d: Device) => Math.floor(d.memoryBytes / bpp);
  const sorted = [...devices].sort((a, b) => b.memoryBytes - a.memoryBytes || a.id - b.id);
  const limits = { maxBufferSize: o.maxBufferSize, maxStorageBufferBindingSize: o.maxStorageBufferBindingSize };
  const seqWanted = c ? Math.min(seq, c.contextLength) : seq;

  const assignments = new Map<number, Assignment>();
  const base = (d: Device) => ({ device: d.id, spec: d.spec, memoryBytes: d.memoryBytes, gflops: d.gflops, linkBps: d.linkBps });
  const held = (d: Device, params: number, b = params * bpp, breakdown = ruleBreakdown(params, o.mode, o.precision)) =>
    ({ params, bytes: b, breakdown, usedShare: b / d.memoryBytes });
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
      units.push({ index, kind: u.kind, devices: [...u.devices], tokensPerSec: 0, inFlight: u.inFlight });
      for (const id of u.devices) {
        const d = present.get(id)!;
        const old = oldAssign.get(id)!;
        kept.add(id);
        if (u.kind === 'replica') {
          assignments.set(id, { ...old, ...base(d), unit: index });
        } else {
          const st = oldStage.get(id)!;
          stages.push({ ...st, pipeline: index });
          assignments.set(id, { ...old, ...base(d), unit: index, reason: old.reason.replace(/pipeline \d+/, `pipeline ${index}`) });
        }
      }
    }
  }

  const rest: Device[] = [];
  for (const d of sorted) {
    if (kept.has(d.id)) continue;
    // Training with a config: the live coordinator's rule (planWorker), with its micro-batch, capped
    // as the coordinator caps a sync replica's plan: no task is larger than one step (the global batch).
    const replicaCap = Math.min(o.maxMicroBatch ?? Infinity, globalBatch);
    const wp = train && c ? planWorker(c, { userCapBytes: d.memoryBytes, ...limits }, { seqLen: seqWanted, maxMicroBatch: replicaCap }) : undefined;
    // A replica must train whole rows of `seq` tokens (the coordinator's rows are fixed-length): one that
    // only fits shorter sequences (planWorker halved them) is offered to the pipelines instead.
    if (wp ? wp.role === 'replica' && wp.seqLen === seqWanted : cap(d) >= P) {
      const index = units.length;
      units.push({ index, kind: 'replica', devices: [d.id], tokensPerSec: 0 });
      assignments.set(d.id, {
        ...base(d), role: 'replica', unit: index, layerRange: [0, shape.nLayer], embeddings: Boolean(c), head: Boolean(c), ...held(d, P),
        ...(wp ? { microBatch: wp.microBatch, seqLen: wp.seqLen } : {}),
        reason: `holds the whole model: ${formatBytes(d.memoryBytes)} >= ${P.toLocaleString('en-US')} params x ${bpp} B = ${formatBytes(P * bpp)}`,
      });
    } else if (c || cap(d) >= smallestUnit) {
      rest.push(d);
    } else {
      assignments.set(d.id, {
        ...base(d), role: 'unassigned', ...held(d, 0),
        reason: `too small: one layer of ${smallestUnit.toLocaleString('en-US')} params needs ${formatBytes(smallestUnit * bpp)}, it has ${formatBytes(d.memoryBytes)}`,
      });
    }
  }

  const stageRows = (index: number, d: Device, stage: number, st: Omit<StagePlan, 'pipeline' | 'stage' | 'device'>, bd: Assignment['breakdown'], why: string, mb?: number, sl?: number) => {
    stages.push({ pipeline: index, stage, device: d.id, ...st });
    assignments.set(d.id, {
      ...base(d), role: 'stage', unit: index, stage, layerRange: st.layerRange, embeddings: st.embeddings, head: st.head,
      ...held(d, st.params, st.bytes, bd), ...(mb !== undefined ? { microBatch: mb, seqLen: sl } : {}),
      reason: `pipeline ${index}, ${why}`,
    });
  };

  if (c) {
    // The live planner itself (pipeline-plan.ts), devices as candidates with their speed on the whole model.
    const byId = new Map(rest.map((d) => [String(d.id), d]));
    const formed = formPipelines(c, rest.map((d) => ({ id: String(d.id), budgetBytes: d.memoryBytes, tokensPerSec: (d.gflops * 1e9) / (6 * P), ...limits })), {
      seqLen: seqWanted, maxMicroBatch: o.maxMicroBatch, ...(train ? {} : { inferBytesPerParam: bpp }),
    });
    for (const p of formed.pipelines) {
      const index = units.length;
      p.stages.forEach((s, i) => {
        const unitRange: [number, number] = [s.embeddings ? 0 : s.layers[0] + 1, s.head ? c.nLayer + 2 : s.layers[1] + 1];
        stageRows(index, byId.get(s.workerId)!, i, {
          layerRange: s.layers, embeddings: s.embeddings, head: s.head, unitRange, params: s.params, bytes: s.paramBytes + s.activationBytes,
        }, s.breakdown, s.reason, train ? p.microBatch : undefined, train ? p.seqLen : undefined);
      });
      units.push({ index, kind: 'pipeline', devices: p.stages.map((s) => Number(s.workerId)), tokensPerSec: 0, inFlight: p.inFlight });
    }
    for (const l of formed.leftOver) {
      const d = byId.get(l.id)!;
      assignments.set(d.id, { ...base(d), role: 'unassigned', ...held(d, 0), reason: l.reason });
    }
  } else {
    // Pipelines from the rest, largest devices first.
    let next = 0;
    while (next < rest.length) {
      const group: Slot[] = [];
      let cuts: Array<[number, number]> | null = null;
      let sum = 0;
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
      for (let i = 0; i < group.length; i++) {
        const d = group[i].device;
        const ur = cuts[i];
        if (ur[1] === ur[0]) {
          // Held nothing in this cut: give it back to the pool.
          rest.splice(k, 0, d);
          continue;
        }
        const params = unitParams.slice(ur[0], ur[1]).reduce((a, b) => a + b, 0);
        const stage = members.length;
        members.push(d.id);
        stageRows(index, d, stage, { layerRange: ur, embeddings: false, head: false, unitRange: ur, params, bytes: params * bpp },
          ruleBreakdown(params, o.mode, o.precision),
          `stage ${stage}: layers [${ur[0]}, ${ur[1]}), ${params.toLocaleString('en-US')} params x ${bpp} B = ${formatBytes(params * bpp)} of its ${formatBytes(d.memoryBytes)}`);
      }
      units.push({ index, kind: 'pipeline', devices: members, tokensPerSec: 0, inFlight: members.length });
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
      : c
        ? `does not fit: ${formatBytes(capacityBytes)} in all would be enough for one copy, but no replica and no complete pipeline can be formed (${unassigned[0]?.reason ?? 'no devices'})`
        : `does not fit: ${formatBytes(capacityBytes)} in all would be enough, but stages hold whole layers: the devices can hold ${devices.reduce((a, d) => a + Math.floor(cap(d) / Math.max(...unitParams)), 0)} of the ${unitParams.length} units of ~${formatBytes(Math.max(...unitParams) * bpp)} each`;
  return {
    devices: devices.length, capacityBytes, capacity: bytes(capacityBytes), neededBytes: need, needed: bytes(need), fits,
    replicas, pipelines, stages, unassigned, assignments: list, units, step, reason, unit: 'bytes',
  };
}
