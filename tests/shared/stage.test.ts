// Pipeline stages on the CPU reference: the stage table, gather/scatter, and composing stages
// equals the whole model (loss, logits, every gradient), including the tied wte split across the
// first and last stage and summed by scatterAddStage. Float64 chains, plus finite differences of dIn.
import { describe, expect, it } from 'vitest';
import type { MicroBatch } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { CpuGpt } from '../../shared/model/cpu/gpt.ts';
import type { FloatArray } from '../../shared/model/cpu/ops.ts';
import { CpuStage } from '../../shared/model/cpu/stage.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import {
  buildStageTable, checkStageCover, checkStageSpec, gatherStage, scatterAddStage, stageEmbeddings, stageHead, type StageSpec,
} from '../../shared/model/stage.ts';
import { Rng } from '../../shared/rng.ts';

const config: ModelConfig = { vocabSize: 13, contextLength: 7, nLayer: 4, nHead: 2, nEmbd: 8 };
const B = 2;
const T = 6;
const full = buildParameterTable(config);

function batch(): MicroBatch {
  const n = B * T;
  const inputs = new Int32Array(n).map((_, i) => (5 * i + 1) % config.vocabSize);
  const targets = new Int32Array(n).map((_, i) => (5 * (i + 1) + 1) % config.vocabSize);
  const mask = new Uint8Array(n).map((_, i) => (i === 0 || i === n - 1 ? 0 : 1));
  return { B, T, inputs, targets, mask };
}

function params64(seed: number): Float64Array {
  const p32 = initParameters(config, seed);
  const rng = new Rng(seed + 1);
  return Float64Array.from(p32, (v) => v + 0.1 * rng.normal());
}

/** Runs the stages in a chain (forward down, backward up); returns loss, logits and the summed full gradient. */
function compose(specs: StageSpec[], p: Float64Array, b: MicroBatch) {
  checkStageCover(config, specs);
  const stages = specs.map((s) => new CpuStage(config, s, Float64Array));
  const sp = stages.map((st) => gatherStage(st.table, p));
  let acts: FloatArray | undefined;
  let loss = NaN;
  const ins: Array<FloatArray | undefined> = [];
  stages.forEach((st, i) => {
    ins.push(acts);
    const fwd = st.forward(sp[i], { B, T, inputs: i === 0 ? b.inputs : undefined, acts, targets: b.targets, mask: b.mask });
    if (fwd.out) acts = new Float64Array(fwd.out);
    else loss = fwd.loss!.loss;
  });
  const logits = new Float64Array(stages[stages.length - 1].logits());
  const grads = new Float64Array(full.total);
  const dIns: Array<FloatArray | null> = [];
  let dOut: FloatArray | undefined;
  for (let i = stages.length - 1; i >= 0; i--) {
    // each stage re-runs its forward first (recompute), as the stage backends do
    stages[i].forward(sp[i], { B, T, inputs: i === 0 ? b.inputs : undefined, acts: ins[i], targets: b.targets, mask: b.mask });
    const g = new Float64Array(stages[i].table.total);
    const dIn = stages[i].backward(g, dOut);
    dIns[i] = dIn ? new Float64Array(dIn) : null;
    dOut = dIns[i] ?? undefined;
    scatterAddStage(stages[i].table, g, grads);
  }
  return { loss, logits, grads, dIns, ins, stages, sp };
}

function whole(p: Float64Array, b: MicroBatch) {
  const m = new CpuGpt(config, Float64Array);
  const { loss } = m.forward(p, b);
  const logits = new Float64Array(m.logits());
  const grads = new Float64Array(full.total);
  m.backward(grads);
  return { loss, logits, grads };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('stage table', () => {
  it('holds each stage\'s tensors in full-table order, wte on the first and the last stage', () => {
    const first = buildStageTable(config, { from: 0, to: 1 });
    const mid = buildStageTable(config, { from: 1, to: 3 });
    const last = buildStageTable(config, { from: 3, to: 4 });
    expect([stageEmbeddings(config, first.spec), stageHead(config, first.spec)]).toEqual([true, false]);
    expect([mid.embeddings, mid.head, last.embeddings, last.head]).toEqual([false, false, false, true]);
    expect(first.tensors.map((t) => t.name).slice(0, 3)).toEqual(['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.h.0.ln_1.weight']);
    expect(mid.tensors.every((t) => t.layer === 1 || t.layer === 2)).toBe(true);
    expect(mid.tensors).toHaveLength(24);
    expect(last.tensors.map((t) => t.name)).toEqual(['transformer.wte.weight', ...full.tensors.filter((t) => t.layer === 3).map((t) => t.name),
      'transformer.ln_f.weight', 'transformer.ln_f.bias']);
    const V = config.vocabSize;
    const C = config.nEmbd;
    expect(first.total + mid.total + last.total).toBe(full.total + V * C); // wte twice
    for (const st of [first, mid, last]) {
      let o = 0;
      for (const t of st.tensors) {
        expect(t.offset).toBe(o);
        expect(t.fullOffset).toBe(full.byName.get(t.name)!.offset);
        o += t.size;
      }
      expect(st.total).toBe(o);
    }
  });

  it('the whole model is the stage [0, L) with exactly the full table\'s layout', () => {
    const st = buildStageTable(config, { from: 0, to: config.nLayer });
    expect(st.total).toBe(full.total);
    expect(st.tensors.map((t) => [t.name, t.offset])).toEqual(full.tensors.map((t) => [t.name, t.offset]));
    const p = initParameters(config, 3);
    expect(gatherStage(st, p)).toEqual(p);
  });

  it('gather then scatterAdd returns the parameters, wte counted by both ends', () => {
    const p = initParameters(config, 4);
    const acc = new Float32Array(full.total);
    const specs = [{ from: 0, to: 2 }, { from: 2, to: 4 }];
    for (const s of specs) {
      const st = buildStageTable(config, s);
      scatterAddStage(st, gatherStage(st, p), acc, 0.5);
    }
    const wte = full.byName.get('transformer.wte.weight')!;
    for (let i = 0; i < full.total; i++) {
      const want = i < wte.size ? p[i] : 0.5 * p[i];
      expect(acc[i]).toBe(want);
    }
  });

  it('rejects bad specs and covers with ERR_STAGE_SPEC, bad vectors with ERR_PARAM_SIZE', () => {
    for (const s of [{ from: 1, to: 1 }, { from: -1, to: 2 }, { from: 0, to: 5 }, { from: 0.5, to: 2 }, { from: 2, to: 1 }]) {
      expect(() => checkStageSpec(config, s)).toThrow(expect.objectContaining({ code: 'ERR_STAGE_SPEC' }));
    }
    for (const c of [[], [{ from: 0, to: 2 }, { from: 3, to: 4 }], [{ from: 0, to: 2 }, { from: 1, to: 4 }], [{ from: 0, to: 3 }], [{ from: 1, to: 4 }]]) {
      expect(() => checkStageCover(config, c)).toThrow(expect.objectContaining({ code: 'ERR_STAGE_SPEC' }));
    }
    expect(() => checkStageCover(config, [{ from: 0, to: 1 }, { from: 1, to: 4 }])).not.toThrow();
    const st = buildStageTable(config, { from: 1, to: 2 });
    expect(() => gatherStage(st, new Float32Array(5))).toThrow(expect.objectContaining({ code: 'ERR_PARAM_SIZE' }));
    const acc = new Float32Array(full.total);
    expect(() => scatterAddStage(st, new Float32Array(st.total + 1), acc)).toThrow(expect.objectContaining({ code: 'ERR_PARAM_SIZE' }));
    expect(acc.every((v) => v === 0)).toBe(true);
  });
});

describe('composed stages equal the whole model (float64)', () => {
  const splits: StageSpec[][] = [
    [{ from: 0, to: 4 }],
    [{ from: 0, to: 1 }, { from: 1, to: 4 }],
    [{ from: 0, to: 3 }, { from: 3, to: 4 }],
    [{ from: 0, to: 1 }, { from: 1, to: 2 }, { from: 2, to: 3 }, { from: 3, to: 4 }],
    [{ from: 0, to: 2 }, { from: 2, to: 3 }, { from: 3, to: 4 }],
  ];
  for (const specs of splits) {
    it(`stages ${specs.map((s) => `[${s.from},${s.to})`).join(' ')}: loss, logits, every gradient`, () => {
      const p = params64(11);
      const b = batch();
      const w = whole(p, b);
      const c = compose(specs, p, b);
      expect(Math.abs(c.loss - w.loss)).toBeLessThan(1e-12);
      expect(maxDiff(c.logits, w.logits)).toBeLessThan(1e-12);
      for (const t of full.tensors) {
        const a = c.grads.subarray(t.offset, t.offset + t.size);
        const e = w.grads.subarray(t.offset, t.offset + t.size);
        expect(maxDiff(a, e), t.name).toBeLessThan(1e-12);
      }
      // the tied wte really has two parts when split: neither stage alone gives the whole gradient
      if (specs.length > 1) {
        const wte = full.byName.get('transformer.wte.weight')!;
        const firstOnly = new Float64Array(full.total);
        const g0 = new Float64Array(c.stages[0].table.total);
        c.stages[0].forward(c.sp[0], { B, T, inputs: b.inputs });
        c.stages[0].backward(g0, c.dIns[1]!);
        scatterAddStage(c.stages[0].table, g0, firstOnly);
        expect(maxDiff(firstOnly.subarray(0, wte.size), w.grads.subarray(0, wte.size))).toBeGreaterThan(1e-3);
      }
      expect(c.dIns[0]).toBeNull();
    });
  }

  it('dIn of every non-first stage matches central differences of the loss in its input', () => {
    const specs = [{ from: 0, to: 1 }, { from: 1, to: 3 }, { from: 3, to: 4 }];
    const p = params64(5);
    const b = batch();
    const c = compose(specs, p, b);
    const lossFrom = (i: number, x: Float64Array): number => {
      let acts: FloatArray = x;
      for (let s = i; s < specs.length; s++) {
        const f = c.stages[s].forward(c.sp[s], { B, T, acts, targets: b.targets, mask: b.mask });
        if (f.out) acts = new Float64Array(f.out);
        else return f.loss!.loss;
      }
      throw new Error('no head');
    };
    const rng = new Rng(3);
    const h = 1e-5;
    for (let i = 1; i < specs.length; i++) {
      const x = new Float64Array(c.ins[i]!);
      const dIn = c.dIns[i]!;
      for (let k = 0; k < 6; k++) {
        const j = rng.int(x.length);
        const old = x[j];
        x[j] = old + h;
        const up = lossFrom(i, x);
        x[j] = old - h;
        const down = lossFrom(i, x);
        x[j] = old;
        const fd = (up - down) / (2 * h);
        expect(Math.abs(fd - dIn[j]), `stage ${i} dIn[${j}] fd ${fd} analytic ${dIn[j]}`).toBeLessThan(1e-8 + 1e-6 * Math.abs(fd));
      }
    }
  });
});
