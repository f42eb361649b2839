import { describe, expect, it } from 'vitest';
import { planCluster, type ClusterPlan, type ClusterOptions } from '../../shared/memory/cluster.ts';
import { replanCluster } from '../../shared/memory/replan.ts';
import { parseDeviceSpec, type Device } from '../../shared/memory/devices.ts';
import { shapeFromParams, shapeFromPreset, type ModelShape } from '../../shared/memory/model-shape.ts';
import { Rng } from '../../shared/rng.ts';
import { AppError } from '../../shared/errors.ts';

const train: ClusterOptions = { mode: 'train', precision: 'fp32' };
const seven = shapeFromParams(7e9, 28); // 28 layers of 250M params = 5 GB each to train

/** Invariants every plan must satisfy, whatever the devices. */
function checkInvariants(shape: ModelShape, devices: Device[], p: ClusterPlan, bpp = 20): void {
  const byId = new Map(devices.map((d) => [d.id, d]));
  expect(p.assignments.map((a) => a.device).sort((a, b) => a - b)).toEqual(devices.map((d) => d.id).sort((a, b) => a - b));
  for (const a of p.assignments) {
    expect(a.bytes).toBeLessThanOrEqual(byId.get(a.device)!.memoryBytes);
    if (a.role === 'replica') expect(a.bytes).toBe(shape.params * bpp);
  }
  for (const u of p.units.filter((x) => x.kind === 'pipeline')) {
    const st = p.stages.filter((s) => s.pipeline === u.index).sort((a, b) => a.stage - b.stage);
    expect(st.length).toBeGreaterThanOrEqual(1);
    expect(st[0].unitRange[0]).toBe(0);
    expect(st[st.length - 1].unitRange[1]).toBe(shape.units.length);
    for (let i = 1; i < st.length; i++) expect(st[i].unitRange[0]).toBe(st[i - 1].unitRange[1]);
    // The units sum to the params, plus (with a config) the last stage's own copy of the tied wte.
    const units = shape.units.reduce((a, u) => a + u.params, 0);
    expect(st.reduce((a, s) => a + s.params, 0)).toBe(st.length === 1 ? shape.params : units);
    if (shape.config) {
      expect(units).toBe(shape.params + shape.config.vocabSize * shape.config.nEmbd);
      expect(st.map((s) => [s.embeddings, s.head])).toEqual(st.map((_, i) => [i === 0, i === st.length - 1]));
    }
  }
  expect(p.fits).toBe(p.units.length > 0);
  if (p.fits) expect(p.capacityBytes).toBeGreaterThanOrEqual(shape.params * bpp);
}

describe('cluster plan', () => {
  it('a 7B model (140 GB to train) fits two 70 GB devices as two stages, not two 69 GB ones', () => {
    const yes = parseDeviceSpec('2x70GB');
    const p = planCluster(seven, yes, train);
    expect(p.neededBytes).toBe(140e9);
    expect(p.fits).toBe(true);
    expect(p.replicas).toBe(0);
    expect(p.pipelines).toBe(1);
    expect(p.stages.map((s) => s.layerRange)).toEqual([[0, 14], [14, 28]]);
    expect(p.assignments.map((a) => a.bytes)).toEqual([70e9, 70e9]);
    checkInvariants(seven, yes, p);

    const no = planCluster(seven, parseDeviceSpec('2x69GB'), train);
    expect(no.fits).toBe(false);
    expect(no.reason).toMatch(/138 GB .* 140 GB/);
    expect(no.unassigned).toHaveLength(2);
    expect(no.step).toBeNull();
    expect(planCluster(seven, parseDeviceSpec('1x140GB'), train).replicas).toBe(1);
  });

  it('never claims a fit the devices cannot hold (random clusters)', () => {
    const rng = new Rng(7);
    const sizes = ['4GiB', '8GiB', '16GiB', '24GiB', '40GB', '80GB'];
    for (let t = 0; t < 25; t++) {
      const spec = Array.from({ length: 1 + rng.int(4) }, () => `${1 + rng.int(12)}x${sizes[rng.int(sizes.length)]}`).join(',');
      const devices = parseDeviceSpec(spec);
      const shape = t % 2 ? seven : shapeFromPreset('gpt2-xl');
      // gpt2-xl at 256 tokens: its logits fit the default binding limit, so pipelines form.
      const p = planCluster(shape, devices, { ...train, seq: 256 });
      checkInvariants(shape, devices, p);
      if (p.capacityBytes < shape.params * 20) expect(p.fits).toBe(false);
    }
  });

  it('balances stages over uneven devices in proportion to their memory', () => {
    const devices = parseDeviceSpec('1x80GB,2x40GB');
    const p = planCluster(seven, devices, train);
    // A greedy fill would give 16 + 8 + 4 layers; proportional to 80:40:40 it is 14 + 7 + 7.
    expect(p.stages.map((s) => s.layerRange)).toEqual([[0, 14], [14, 21], [21, 28]]);
    expect(p.stages.map((s) => s.device)).toEqual([0, 1, 2]);
    checkInvariants(seven, devices, p);
  });

  it('GPT-2: replicas on big devices, a pipeline whose first stage holds the embeddings and last the head, the rest unassigned with the reason', () => {
    const gpt2 = shapeFromPreset('gpt2');
    const devices = parseDeviceSpec('2x8GiB,2x2GiB,1x1GiB,1x100MB');
    const p = planCluster(gpt2, devices, { ...train, seq: 256 });
    checkInvariants(gpt2, devices, p);
    expect(p.replicas).toBe(2);
    expect(p.pipelines).toBe(1);
    const st = p.stages;
    // Two 2 GiB devices: neither holds the 2.49 GB model; together they hold it with wte on both ends.
    expect(st.map((s) => s.device)).toEqual([2, 3]);
    expect(st.map((s) => [s.embeddings, s.head])).toEqual([[true, false], [false, true]]);
    expect(st.map((s) => s.layerRange)).toEqual([[0, st[0].layerRange[1]], [st[0].layerRange[1], 12]]);
    expect(p.unassigned.find((u) => u.device === 4)!.reason).toMatch(/left over: .* too little for a complete pipeline/);
    const tiny = p.unassigned.find((u) => u.device === 5)!;
    expect(tiny.reason).toMatch(/too small for a stage: one block with one micro-batch of 1 x 256 tokens needs 166 MB/);
    for (const a of p.assignments.filter((x) => x.role !== 'unassigned')) {
      expect(a.microBatch).toBeGreaterThanOrEqual(1);
      expect(a.seqLen).toBe(256);
    }
  });

  it('at the full 1024 tokens, the last stage\'s logits exceed the default binding limit: no replica, no pipeline, and the reason says so', () => {
    // An 8 GiB device holds GPT-2 by the rule, but only 512-token rows whole (planWorker halves the sequence):
    // it cannot train the coordinator's 1024-token rows as a replica, nor the logits as a last stage.
    const p = planCluster(shapeFromPreset('gpt2'), parseDeviceSpec('1x8GiB,3x2GiB'), train);
    expect(p.replicas).toBe(0);
    expect(p.fits).toBe(false);
    expect(p.unassigned[0].reason).toMatch(/can hold the last stage .* logits .* exceeds the binding limit 134217728/);
    expect(p.reason).toMatch(/no replica and no complete pipeline/);
  });

  it('step time: 6 x params x tokens over the summed speeds, plus gradient transfer over the links', () => {
    const tiny = shapeFromPreset('tiny');
    const devices = parseDeviceSpec('1x1GiB@1000/1Gbps,1x1GiB@3000/1Gbps');
    const p = planCluster(tiny, devices, { ...train, globalBatch: 32, coordinatorLinkBps: 10e9 });
    const P = tiny.params;
    const tokens = 32 * 64;
    const compute = (6 * P * tokens) / 4000e9;
    const transfer = Math.max((2 * P * 32) / 1e9, (2 * 2 * P * 32) / 10e9);
    expect(p.step!.tokensPerStep).toBe(tokens);
    expect(p.step!.activeUnits).toBe(2);
    expect(p.step!.computeSeconds).toBeCloseTo(compute, 12);
    expect(p.step!.transferSeconds).toBeCloseTo(transfer, 12);
    expect(p.step!.stepSeconds).toBeCloseTo(compute + transfer, 12);
    expect(p.step!.arithmetic.join('\n')).toMatch(/6 x 100,320 params x 2,048 tokens/);
  });

  it('leaves a unit on a slow link as a spare when it would lengthen the step', () => {
    const gpt2 = shapeFromPreset('gpt2');
    const p = planCluster(gpt2, parseDeviceSpec('1x8GiB@1000/10Gbps,1x8GiB@1000/100Mbps'), { ...train, seq: 512, coordinatorLinkBps: 10e9 });
    expect(p.step!.activeUnits).toBe(1);
    expect(p.units.find((u) => u.devices[0] === 1)!.active).toBe(false);
    expect(p.step!.arithmetic.join('\n')).toMatch(/spares/);
  });
});

describe('replan on churn', () => {
  const medium = shapeFromPreset('gpt2-medium');
  const laptops = parseDeviceSpec('30x4GiB@1000/50Mbps');
  const at512: ClusterOptions = { ...train, seq: 512 };
  const before = planCluster(medium, laptops, at512);

  it('a stage leaving breaks only its pipeline: nothing moves, its partners wait', () => {
    // 4 GiB holds at most ~9 blocks beside wte (first/last) or alone: 3 laptops per pipeline.
    expect(before.pipelines).toBe(10);
    const unit = before.assignments.find((a) => a.device === 3)!.unit!;
    const partners = before.units[unit].devices.filter((d) => d !== 3).sort((a, b) => a - b);
    const r = replanCluster(medium, laptops, before, { leave: [3] }, at512);
    expect(r.after.pipelines).toBe(9);
    expect(r.movedBytes).toBe(0);
    expect(r.after.unassigned.map((u) => u.device).sort((a, b) => a - b)).toEqual(partners);
    expect(r.after.unassigned[0].reason).toMatch(/left over/);
    checkInvariants(medium, laptops.filter((d) => d.id !== 3), r.after);
  });

  it('a device joining completes the pipeline and receives its stage (weights + Adam, 12 B/param)', () => {
    const r = replanCluster(medium, laptops, before, { leave: [3], join: parseDeviceSpec('1x4GiB@1000/50Mbps') }, at512);
    expect(r.added).toEqual([30]);
    expect(r.after.pipelines).toBe(10);
    const stage = r.after.stages.find((s) => s.device === 30)!;
    const joined = r.moves.find((m) => m.device === 30)!;
    expect(joined).toEqual({ device: 30, params: stage.params, bytes: stage.params * 12, why: 'newly assigned' });
    // Only the re-formed pipeline's members move anything.
    const members = new Set(r.after.units[stage.pipeline].devices);
    for (const m of r.moves) expect(members.has(m.device)).toBe(true);
    expect(r.movedBytes).toBe(r.moves.reduce((a, m) => a + m.params * 12, 0));
  });

  it('a new replica receives the whole model; an unknown id is refused', () => {
    const gpt2 = shapeFromPreset('gpt2');
    const devs = parseDeviceSpec('3x8GiB');
    const o = { ...train, seq: 512 };
    const b = planCluster(gpt2, devs, o);
    const r = replanCluster(gpt2, devs, b, { leave: [1], join: parseDeviceSpec('8GiB') }, o);
    expect(r.after.replicas).toBe(3);
    expect(r.movedBytes).toBe(gpt2.params * 12);
    expect(() => replanCluster(gpt2, devs, b, { leave: [99] }, o)).toThrow(AppError);
    const inf = replanCluster(gpt2, devs, planCluster(gpt2, devs, { mode: 'infer', precision: 'fp16' }), { join: parseDeviceSpec('8GiB') }, { mode: 'infer', precision: 'fp16' });
    expect(inf.movedBytes).toBe(gpt2.params * 2);
  });
});

describe('a replica micro-batch as the coordinator plans it', () => {
  it('is capped at one step (the global batch), as the live coordinator caps a sync replica', () => {
    const small = shapeFromPreset('small');
    const mb = (o: Partial<ClusterOptions>) => planCluster(small, parseDeviceSpec('1x8GB'), { ...train, seq: 16, ...o }).assignments[0].microBatch;
    expect(mb({ globalBatch: 8 })).toBe(8);
    expect(mb({ globalBatch: 100, maxMicroBatch: 64 })).toBe(64);
    expect(mb({ globalBatch: 3, maxMicroBatch: 64 })).toBe(3);
  });
});
