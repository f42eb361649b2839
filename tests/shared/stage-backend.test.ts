// The CPU StageBackend through the StageBackend interface: a 3-stage chain (float32, as a stage
// worker runs it) equals CpuBackend on the whole model within 1e-6, the head reports loss/tokens,
// and bad calls get named errors without running anything.
import { describe, expect, it } from 'vitest';
import type { MicroBatch } from '../../shared/backend.ts';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { buildStageTable, gatherStage, scatterAddStage } from '../../shared/model/stage.ts';

const config: ModelConfig = { ...PRESETS.tiny };
const B = 2;
const T = 16;

function batch(): MicroBatch {
  const n = B * T;
  const inputs = new Int32Array(n).map((_, i) => (7 * i + 3) % config.vocabSize);
  const targets = new Int32Array(n).map((_, i) => (11 * i + 5) % config.vocabSize);
  const mask = new Uint8Array(n).map((_, i) => (i % 5 === 0 ? 0 : 1));
  return { B, T, inputs, targets, mask };
}

function relMax(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / Math.max(m, 1e-30);
}

describe('CpuStageBackend', () => {
  it('three stages, forward down and forwardBackward up, equal the whole-model CpuBackend', async () => {
    const params = initParameters(config, 21);
    const b = batch();
    const ref = createCpuBackend(config);
    await ref.setParams(params);
    const want = await ref.forwardBackward(b);
    const wantLogits = (await ref.forward(b)).logits;

    const specs = [{ from: 0, to: 1 }, { from: 1, to: 2 }, { from: 2, to: 3 }];
    const stages = specs.map((s) => createCpuStageBackend(config, s));
    const tables = specs.map((s) => buildStageTable(config, s));
    for (let i = 0; i < 3; i++) await stages[i].setParams(gatherStage(tables[i], params));
    const a1 = await stages[0].forward({ B, T, inputs: b.inputs });
    const a2 = await stages[1].forward({ B, T, acts: a1 });
    expect(a1).toHaveLength(B * T * config.nEmbd);
    const logits = await stages[2].forward({ B, T, acts: a2, targets: b.targets, mask: b.mask });
    expect(relMax(logits, wantLogits)).toBeLessThan(1e-6);

    const head = await stages[2].forwardBackward({ B, T, acts: a2, targets: b.targets, mask: b.mask });
    expect(head.loss).toBeCloseTo(want.loss, 6);
    expect(head.tokens).toBe(want.tokens);
    const mid = await stages[1].forwardBackward({ B, T, acts: a1 }, head.dIn);
    const first = await stages[0].forwardBackward({ B, T, inputs: b.inputs }, mid.dIn);
    expect(first.dIn).toBeUndefined();
    expect(first.loss).toBeUndefined();
    expect(mid.dIn).toHaveLength(B * T * config.nEmbd);

    const grads = new Float32Array(buildParameterTable(config).total);
    [first, mid, head].forEach((r, i) => scatterAddStage(tables[i], r.grads, grads));
    for (const t of buildParameterTable(config).tensors) {
      const g = grads.subarray(t.offset, t.offset + t.size);
      const e = want.grads.subarray(t.offset, t.offset + t.size);
      expect(relMax(g, e), t.name).toBeLessThan(1e-6);
    }
    // norms are of each stage's own vector: their squares add up to the whole (wte counted per stage part)
    for (const r of [first, mid, head]) {
      expect(r.nonFinite).toBe(0);
      expect(r.gradNorm).toBeCloseTo(Math.hypot(...r.grads), 5);
    }
  });

  it('a micro-batch with no masked-in position gives zero gradients and a zero dIn', async () => {
    const params = initParameters(config, 2);
    const spec = { from: 2, to: 3 };
    const s = createCpuStageBackend(config, spec);
    await s.setParams(gatherStage(buildStageTable(config, spec), params));
    const b = batch();
    const r = await s.forwardBackward({ B, T, acts: new Float32Array(B * T * config.nEmbd).fill(0.1), targets: b.targets, mask: new Uint8Array(B * T) });
    expect([r.loss, r.tokens, r.gradNorm]).toEqual([0, 0, 0]);
    expect(r.dIn!.every((v) => v === 0)).toBe(true);
  });

  it('bad calls are named errors', async () => {
    const spec = { from: 1, to: 2 };
    const s = createCpuStageBackend(config, spec);
    const acts = new Float32Array(B * T * config.nEmbd);
    await expect(s.forward({ B, T, acts })).rejects.toMatchObject({ code: 'ERR_NO_PARAMS' });
    await expect(s.setParams(new Float32Array(10))).rejects.toMatchObject({ code: 'ERR_PARAM_SIZE' });
    await s.setParams(gatherStage(buildStageTable(config, spec), initParameters(config, 1)));
    await expect(s.forward({ B, T, inputs: batch().inputs })).rejects.toMatchObject({ code: 'ERR_STAGE_INPUT' });
    await expect(s.forward({ B, T, acts: acts.subarray(1) })).rejects.toMatchObject({ code: 'ERR_BATCH_SHAPE' });
    await expect(s.forwardBackward({ B, T, acts })).rejects.toMatchObject({ code: 'ERR_STAGE_INPUT' });
    await expect(s.forwardBackward({ B, T, acts }, new Float32Array(3))).rejects.toMatchObject({ code: 'ERR_BATCH_SHAPE' });
    // the wire type is float32: a Float64Array (double the bytes) is refused, not reinterpreted
    await expect(s.forward({ B, T, acts: new Float64Array(acts.length) as unknown as Float32Array })).rejects.toMatchObject({ code: 'ERR_STAGE_INPUT' });
    await expect(s.forwardBackward({ B, T, acts }, new Float64Array(acts.length) as unknown as Float32Array)).rejects.toMatchObject({ code: 'ERR_STAGE_INPUT' });
    await expect(s.forward({ B, T: config.contextLength + 1, acts })).rejects.toMatchObject({ code: 'ERR_BATCH_SHAPE' });
    const first = createCpuStageBackend(config, { from: 0, to: 1 });
    await first.setParams(gatherStage(buildStageTable(config, { from: 0, to: 1 }), initParameters(config, 1)));
    await expect(first.forward({ B, T, inputs: new Int32Array(B * T).fill(config.vocabSize) })).rejects.toMatchObject({ code: 'ERR_TOKEN_RANGE' });
    const head = createCpuStageBackend(config, { from: 2, to: 3 });
    await head.setParams(gatherStage(buildStageTable(config, { from: 2, to: 3 }), initParameters(config, 1)));
    await expect(head.forwardBackward({ B, T, acts })).rejects.toMatchObject({ code: 'ERR_STAGE_INPUT' });
    expect(() => createCpuStageBackend(config, { from: 2, to: 4 })).toThrow(expect.objectContaining({ code: 'ERR_STAGE_SPEC' }));
    s.dispose();
    await expect(s.forward({ B, T, acts })).rejects.toMatchObject({ code: 'ERR_BACKEND_DISPOSED' });
  });
});
