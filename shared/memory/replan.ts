// Re-planning under churn: devices leave and/or join, the cluster is planned again (keeping the old
// plan's choices where they still hold), and the bytes that must move to devices that now hold model
// units they did not hold before are counted.

import { AppError } from '../errors.ts';
import type { Device } from './devices.ts';
import type { ModelShape } from './model-shape.ts';
import { planCluster } from './cluster.ts';
import type { ClusterOptions, ClusterPlan } from './cluster-types.ts';
import { bytesPerParam } from './rules.ts';
import { bytes, formatBytes, type Bytes } from './units.ts';

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
  // Holding both ends (a replica) means one wte, not the last stage's second copy in the head unit.
  const last = shape.units.length - 1;
  const tied = shape.config ? shape.config.vocabSize * shape.config.nEmbd : 0;
  const both = (r: [number, number] | undefined) => r !== undefined && r[0] === 0 && r[1] === last + 1;
  if (tied && both(now) && now[1] > now[0] && (!old || !both(old))) {
    // Newly counted: the embeddings unit and/or the head unit, each with a wte; a replica holds one, and a device
    // that held one end already has it: one V x C too many whenever either end is new.
    const embNew = !old || old[0] > 0;
    const headNew = !old || old[1] <= last;
    if (embNew || headNew) params -= tied;
  }
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
