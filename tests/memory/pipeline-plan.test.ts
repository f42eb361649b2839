import { describe, expect, it } from 'vitest';
import { formPipelines, shouldRebalance, estimatePipelineTokensPerSec, type PlannedPipeline, type StageCandidate } from '../../shared/memory/pipeline-plan.ts';
import { stageBytes, stageFlopsPerToken, stageShape, wholeModelTokensPerSec } from '../../shared/memory/stage-memory.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { buildStageTable } from '../../shared/model/stage.ts';
import { stageParams } from '../../shared/memory/stage-memory.ts';
import { PRESETS, parameterCount, type ModelConfig } from '../../shared/model/config.ts';
import { AppError } from '../../shared/errors.ts';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const small = PRESETS.small;

/** A stage's parameters counted from the parameter table itself: its blocks' tensors, wte + wpe first, ln_f + wte last. */
function tableParams(c: ModelConfig, from: number, to: number): number {
  let n = 0;
  for (const t of buildParameterTable(c).tensors) {
    if (t.layer >= from && t.layer < to) n += t.size;
    if (from === 0 && (t.name === 'transformer.wte.weight' || t.name === 'transformer.wpe.weight')) n += t.size;
    if (to === c.nLayer && (t.name === 'transformer.wte.weight' || t.name.startsWith('transformer.ln_f.'))) n += t.size;
  }
  return n;
}

/** Every pipeline covers [0, L) with contiguous non-empty stages, ends marked, each within its budget. */
function checkPipeline(c: ModelConfig, p: PlannedPipeline, budgets: Map<string, number>): void {
  expect(p.stages[0].layers[0]).toBe(0);
  expect(p.stages[p.stages.length - 1].layers[1]).toBe(c.nLayer);
  p.stages.forEach((s, i) => {
    expect(s.layers[1]).toBeGreaterThan(s.layers[0]);
    if (i > 0) expect(s.layers[0]).toBe(p.stages[i - 1].layers[1]);
    expect(s.embeddings).toBe(i === 0);
    expect(s.head).toBe(i === p.stages.length - 1);
    expect(s.params).toBe(tableParams(c, s.layers[0], s.layers[1]));
    expect(s.paramBytes).toBe(20 * s.params);
    expect(s.paramBytes + s.activationBytes).toBeLessThanOrEqual(budgets.get(s.workerId)!);
    const b = s.breakdown;
    expect(b.weights + b.gradients + b.optimizer + b.activations).toBe(s.paramBytes + s.activationBytes);
  });
}

/** Oracle: every 2-stage cut and order, brute force. */
function bestTwoStage(c: ModelConfig, cands: StageCandidate[], mb: number, seq: number): { bottleneck: number; fits: boolean } {
  let best = Infinity;
  const P = parameterCount(c);
  for (const [a, b] of [[cands[0], cands[1]], [cands[1], cands[0]]]) {
    for (let k = 1; k < c.nLayer; k++) {
      const s0 = stageShape(c, 0, k);
      const s1 = stageShape(c, k, c.nLayer);
      if (stageBytes(c, s0, mb, seq, 2) > a.budgetBytes || stageBytes(c, s1, mb, seq, 2) > b.budgetBytes) continue;
      const t = Math.max(stageFlopsPerToken(c, s0) / ((a.tokensPerSec ?? 1) * 6 * P), stageFlopsPerToken(c, s1) / ((b.tokensPerSec ?? 1) * 6 * P));
      best = Math.min(best, t);
    }
  }
  return { bottleneck: best, fits: best < Infinity };
}

describe('formPipelines', () => {
  it('three 9 MiB workers hold the small preset (20.8 MB to train) as one 3-stage pipeline with wte on both ends', () => {
    expect(20 * parameterCount(small)).toBeGreaterThan(9 * MiB);
    const cands = ['a', 'b', 'c'].map((id) => ({ id, budgetBytes: 9 * MiB }));
    const r = formPipelines(small, cands, { seqLen: 16, maxMicroBatch: 64 });
    expect(r.leftOver).toEqual([]);
    expect(r.pipelines).toHaveLength(1);
    const p = r.pipelines[0];
    expect(p.stages).toHaveLength(3);
    expect(p.inFlight).toBe(3);
    expect(p.expectedBubble).toBeCloseTo(2 / 5, 12);
    checkPipeline(small, p, new Map(cands.map((k) => [k.id, k.budgetBytes])));
    // wte is held (and counted) twice: the stages together hold the model plus one more V x C.
    expect(p.stages.reduce((a, s) => a + s.params, 0)).toBe(parameterCount(small) + small.vocabSize * small.nEmbd);
    // The micro-batch is the largest that fits: one more and no 3-stage cut of these budgets holds.
    const fitsAt = (mb: number) => {
      for (let a = 1; a < small.nLayer - 1; a++) for (let b = a + 1; b < small.nLayer; b++) {
        const shapes = [stageShape(small, 0, a), stageShape(small, a, b), stageShape(small, b, small.nLayer)];
        if (shapes.every((s) => stageBytes(small, s, mb, 16, 3) <= 9 * MiB)) return true;
      }
      return false;
    };
    expect(fitsAt(p.microBatch)).toBe(true);
    expect(fitsAt(p.microBatch + 1)).toBe(false);
    expect(p.stages[0].reason).toMatch(/stage 0 of 3: blocks \[0, \d\) \+ embeddings/);
  });

  it('balances by measured speed: the min-max cut equals brute force, and a faster worker gets more blocks', () => {
    const c = PRESETS.gpt2;
    const eq = [{ id: 'x', budgetBytes: 2 * GiB }, { id: 'y', budgetBytes: 2 * GiB }];
    const fast = [{ id: 'x', budgetBytes: 2 * GiB, tokensPerSec: 300 }, { id: 'y', budgetBytes: 2 * GiB, tokensPerSec: 100 }];
    const blocksOf = (p: PlannedPipeline, id: string) => { const s = p.stages.find((x) => x.workerId === id)!; return s.layers[1] - s.layers[0]; };
    const pe = formPipelines(c, eq, { seqLen: 128, maxMicroBatch: 1 }).pipelines[0];
    const pf = formPipelines(c, fast, { seqLen: 128, maxMicroBatch: 1 }).pipelines[0];
    expect(blocksOf(pf, 'x')).toBeGreaterThan(blocksOf(pe, 'x'));
    const est = pf.tokensPerSec!;
    expect(est).toBeGreaterThan(0);
    expect(pe.tokensPerSec).toBeUndefined();
    const oracle = bestTwoStage(c, fast, 1, 128);
    const stages = pf.stages.map((s) => ({ layers: s.layers, tokensPerSec: s.workerId === 'x' ? 300 : 100 }));
    expect(estimatePipelineTokensPerSec(c, stages, 2)).toBeCloseTo(est, 9);
    expect(est).toBeCloseTo((1 - 1 / 3) / oracle.bottleneck, 9);
    // A stage's measured tokens/s, put on the whole-model scale, gives back the worker's speed.
    const s0 = stageShape(c, 0, 5);
    const stageTps = (300 * 6 * parameterCount(c)) / stageFlopsPerToken(c, s0);
    expect(wholeModelTokensPerSec(c, s0, stageTps)).toBeCloseTo(300, 9);
  });

  it('memory bounds the cut: a smaller worker holds fewer blocks, every stage within its budget', () => {
    const c = PRESETS.gpt2;
    const cands = [{ id: 'big', budgetBytes: 2.2 * GiB }, { id: 'mid', budgetBytes: 1.1 * GiB }, { id: 'low', budgetBytes: 0.5 * GiB }];
    const r = formPipelines(c, cands, { seqLen: 256, maxMicroBatch: 4 });
    expect(r.pipelines).toHaveLength(1);
    const p = r.pipelines[0];
    checkPipeline(c, p, new Map(cands.map((k) => [k.id, k.budgetBytes])));
    const low = p.stages.find((s) => s.workerId === 'low')!;
    // 0.5 GiB cannot hold wte (50257 x 768 x 20 B = 772 MB): it is a middle stage.
    expect(low.embeddings || low.head).toBe(false);
    expect(p.microBatch).toBeLessThanOrEqual(4);
  });

  it('forms several pipelines from many workers and says why the rest are left out', () => {
    const cands: StageCandidate[] = [...'abcdefg'].map((id) => ({ id, budgetBytes: 9 * MiB }));
    cands.push({ id: 'tiny', budgetBytes: 1 * MiB });
    const r = formPipelines(small, cands, { seqLen: 16 });
    expect(r.pipelines).toHaveLength(2);
    const used = r.pipelines.flatMap((p) => p.stages.map((s) => s.workerId));
    expect(new Set(used).size).toBe(used.length);
    for (const p of r.pipelines) checkPipeline(small, p, new Map(cands.map((k) => [k.id, k.budgetBytes])));
    const why = new Map(r.leftOver.map((l) => [l.id, l.reason]));
    expect(why.get('tiny')).toMatch(/too small for a stage: one block .* needs .* \(\d+ bytes\)/);
    expect(used.length + r.leftOver.length).toBe(cands.length);
    for (const id of [...'abcdefg'].filter((x) => !used.includes(x))) expect(why.get(id)).toMatch(/left over/);
  });

  it('equal budgets: the measured-slowest worker is the one left over (what rebalancing re-forms without)', () => {
    const cands: StageCandidate[] = [
      { id: 'a', budgetBytes: 9 * MiB, tokensPerSec: 40 }, { id: 'b', budgetBytes: 9 * MiB, tokensPerSec: 400 },
      { id: 'c', budgetBytes: 9 * MiB, tokensPerSec: 420 }, { id: 'd', budgetBytes: 9 * MiB, tokensPerSec: 410 },
    ];
    const r = formPipelines(small, cands, { seqLen: 16 });
    expect(r.pipelines).toHaveLength(1);
    expect(r.leftOver.map((l) => l.id)).toEqual(['a']);
    const withSlow = formPipelines(small, cands.filter((k) => k.id !== 'd'), { seqLen: 16 }).pipelines[0];
    expect(shouldRebalance(withSlow.tokensPerSec!, r.pipelines[0].tokensPerSec!)).toBe(true);
  });

  it('adapter limits: wte over the binding limit keeps a worker off the ends; the parameter buffer must fit maxBufferSize', () => {
    const c = PRESETS.gpt2;
    const defaults = { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB };
    const r = formPipelines(c, ['a', 'b', 'c', 'd'].map((id) => ({ id, budgetBytes: 2 * GiB, ...defaults })), { seqLen: 64 });
    expect(r.pipelines).toEqual([]);
    expect(r.leftOver).toHaveLength(4);
    const wide = { maxBufferSize: 2 * GiB, maxStorageBufferBindingSize: 1 * GiB };
    const ok = formPipelines(c, ['a', 'b'].map((id) => ({ id, budgetBytes: 2 * GiB, ...wide })), { seqLen: 64 });
    expect(ok.pipelines).toHaveLength(1);
    for (const s of ok.pipelines[0].stages) expect(4 * s.params).toBeLessThanOrEqual(wide.maxBufferSize);
  });

  it('rejects bad input with ERR_PIPELINE_PLAN', () => {
    const k = { id: 'a', budgetBytes: GiB };
    const code = (f: () => unknown) => { try { f(); } catch (e) { return (e as AppError).code; } return 'none'; };
    expect(code(() => formPipelines(small, [k, k], { seqLen: 16 }))).toBe('ERR_PIPELINE_PLAN');
    expect(code(() => formPipelines(small, [k], { seqLen: 129 }))).toBe('ERR_PIPELINE_PLAN');
    expect(code(() => formPipelines(small, [{ id: 'a', budgetBytes: -1 }], { seqLen: 16 }))).toBe('ERR_PIPELINE_PLAN');
    expect(code(() => formPipelines(small, [{ ...k, tokensPerSec: NaN }], { seqLen: 16 }))).toBe('ERR_PIPELINE_PLAN');
    expect(code(() => formPipelines(small, [k], { seqLen: 16, inFlight: 0 }))).toBe('ERR_PIPELINE_PLAN');
    expect(formPipelines(small, [], { seqLen: 16 })).toEqual({ pipelines: [], leftOver: [] });
  });
});

describe('the stage model counts what a stage worker holds', () => {
  it('stage params equal the stage table the engine and the coordinator use, for every contiguous range', () => {
    for (const c of [PRESETS.tiny, small, PRESETS.gpt2]) {
      for (let from = 0; from < c.nLayer; from++) {
        for (let to = from + 1; to <= c.nLayer; to++) {
          expect(stageParams(c, stageShape(c, from, to)), `[${from}, ${to})`).toBe(buildStageTable(c, { from, to }).total);
        }
      }
    }
  });
});

describe('shouldRebalance (Petals: move only when the proposal beats current / 0.75)', () => {
  it('holds still for small gains, moves for clear ones', () => {
    expect(shouldRebalance(100, 120)).toBe(false);
    expect(shouldRebalance(100, 133)).toBe(false);
    expect(shouldRebalance(100, 134)).toBe(true);
    expect(shouldRebalance(0, 1)).toBe(true);
    expect(shouldRebalance(0, 0)).toBe(false);
    expect(() => shouldRebalance(-1, 5)).toThrow(AppError);
    expect(() => shouldRebalance(1, Infinity)).toThrow(/proposedTokensPerSec/);
  });
});
