// The outer optimizer and the inner round. The identity: H = 1, no compression, outer lr 1,
// momentum 0 is plain token-weighted averaging of the workers' one-step AdamW updates, bit for bit.
import { describe, expect, it } from 'vitest';
import { buildMicroBatch } from '../../../shared/data/index.ts';
import { syntheticDataset } from '../../../shared/data/synthetic.ts';
import { decode, encode } from '../../../shared/diloco/codec.ts';
import { HostInnerEngine, runRound, type InnerHyper } from '../../../shared/diloco/inner.ts';
import { OuterNesterov, weightedMean } from '../../../shared/diloco/outer.ts';
import { createCpuBackend } from '../../../shared/model/cpu-backend.ts';
import { presetConfig } from '../../../shared/model/config.ts';
import { initParameters } from '../../../shared/model/init.ts';
import { buildParameterTable } from '../../../shared/model/parameters.ts';
import { adamwStep, clipGradNorm, createAdamWState, decayMask } from '../../../shared/optim/index.ts';

const model = presetConfig('tiny');
const table = buildParameterTable(model);
const T = 16;
const data = syntheticDataset(64, T);
const hyper = (H: number, lr = 3e-3): InnerHyper => ({ lrs: Array(H).fill(lr), beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 });

function roundData(ids: number[], B: number) {
  const b = buildMicroBatch(data, ids);
  return { B, T: b.T, inputs: b.inputs, targets: b.targets, mask: b.mask };
}

describe('outer Nesterov', () => {
  it('H=1, no compression, outer lr 1, momentum 0 == token-weighted mean of one-step AdamW updates (exact)', async () => {
    const theta = initParameters(model, 7);
    // Three workers, different rows and row counts (so different token weights).
    const shards = [[0, 1, 2], [3, 4], [5, 6, 7, 8]];
    const deltas = [];
    const ends: Array<{ end: Float32Array; tokens: number }> = [];
    for (const ids of shards) {
      const engine = new HostInnerEngine(createCpuBackend(model), table);
      const r = await runRound(engine, theta, roundData(ids, ids.length), hyper(1));
      deltas.push({ delta: decode(encode(r.delta, 'none')), tokens: r.tokens });
      // Independently: one AdamW step from fresh moments on the same batch.
      const be = createCpuBackend(model);
      await be.setParams(theta);
      const g = await be.forwardBackward(buildMicroBatch(data, ids));
      clipGradNorm(g.grads, 1);
      const p = new Float32Array(theta);
      adamwStep(p, g.grads, createAdamWState(p.length), 3e-3, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 }, decayMask(table));
      ends.push({ end: p, tokens: g.tokens });
    }
    const params = new Float32Array(theta);
    new OuterNesterov(params.length).step(params, weightedMean(deltas, params.length), { lr: 1, momentum: 0 });
    const total = ends.reduce((a, e) => a + e.tokens, 0);
    const expected = new Float32Array(theta.length);
    for (let i = 0; i < theta.length; i++) {
      let s = 0;
      for (const e of ends) s += (e.tokens / total) * Math.fround(e.end[i] - theta[i]);
      expected[i] = theta[i] + s;
    }
    expect(params).toEqual(expected);
    // And it moved: the workers' updates differ from each other and from zero.
    expect(ends[0].end).not.toEqual(ends[1].end);
    expect(params).not.toEqual(theta);
  });

  it('Nesterov momentum follows buf = mu buf + g, theta -= lr (g + mu buf)', () => {
    const o = new OuterNesterov(2);
    const p = new Float32Array([1, -1]);
    o.step(p, new Float64Array([0.5, 0.25]), { lr: 0.7, momentum: 0.9 });
    // buf = g; update = g + 0.9 g = 1.9 g
    expect(p[0]).toBeCloseTo(1 - 0.7 * 1.9 * 0.5, 6);
    o.step(p, new Float64Array([0.5, 0.25]), { lr: 0.7, momentum: 0.9 });
    // buf = 0.9*0.5 + 0.5 = 0.95; update = 0.5 + 0.9*0.95 = 1.355
    expect(p[0]).toBeCloseTo(1 - 0.7 * 0.95 - 0.7 * 1.355, 6);
    expect(o.buf[0]).toBeCloseTo(0.95, 6);
    expect(() => o.step(p, new Float64Array(3), { lr: 0.7, momentum: 0.9 })).toThrow(/outer step/);
    expect(() => weightedMean([{ delta: new Float32Array(2), tokens: 0 }], 2)).toThrow(/no tokens/);
  });

  it('a round of H inner steps lowers the loss on its data and keeps moments between rounds until reset', async () => {
    const theta = initParameters(model, 3);
    const engine = new HostInnerEngine(createCpuBackend(model), table);
    const d = roundData([...Array(20).keys()], 4); // H = 5 steps of 4 rows
    const r = await runRound(engine, theta, d, hyper(5, 1e-2));
    expect(r.losses.at(-1)!).toBeLessThan(r.losses[0]);
    expect(engine.momentSteps).toBe(5);
    for (let i = 0; i < theta.length; i++) if (r.delta[i] !== Math.fround(theta[i] - r.end[i])) throw new Error(`delta[${i}]`);
    engine.resetMoments();
    expect(engine.momentSteps).toBe(0);
  });
});
