// Robust aggregators against real gradients of the tiny model (CPU reference): with honest
// results only they agree with the streaming token-weighted mean; with a 25% minority of
// attackers (sign flip x10, huge scale, noise) the robust ones stay on the honest direction
// while the plain mean is dragged away. A banned worker's results can be removed exactly.
import { describe, expect, it } from 'vitest';
import { createRobustAggregator, MeanAggregator } from '../../coordinator/train/aggregate.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { arithRevDataset, buildMicroBatch } from '../../shared/data/index.ts';
import { Rng } from '../../shared/rng.ts';

const model = presetConfig('tiny');
const params = initParameters(model, 1);

async function honestGrads(k: number): Promise<Array<{ g: Float32Array; tokens: number }>> {
  const ds = arithRevDataset({ T: 16, seed: 3 });
  const be = createCpuBackend(model);
  await be.setParams(params);
  const out = [];
  for (let i = 0; i < k; i++) {
    const r = await be.forwardBackward(buildMicroBatch(ds, [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3]));
    out.push({ g: r.grads, tokens: r.tokens });
  }
  return out;
}

const cos = (a: Float32Array, b: Float32Array) => {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return d / Math.sqrt(na * nb);
};
const relErr = (a: Float32Array, b: Float32Array) => {
  let d = 0, n = 0;
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += b[i] ** 2; }
  return Math.sqrt(d / n);
};

function run(kind: 'mean' | 'trimmed-mean' | 'centered-clip', items: Array<{ g: Float32Array; tokens: number; id: string }>, trim?: number): Float32Array {
  const P = items[0].g.length;
  const a = kind === 'mean' ? new MeanAggregator(P) : createRobustAggregator(kind, P, trim === undefined ? {} : { trim });
  a.begin(0);
  for (const x of items) a.add(x.g, x.tokens, x.id);
  const out = new Float32Array(P);
  a.finish(out);
  return out;
}

describe('robust aggregation', () => {
  it('honest results only: trimmed-mean (no trim) equals the token-weighted mean; centered-clip stays within 5%', async () => {
    const hs = (await honestGrads(6)).map((h, i) => ({ ...h, id: `w${i}` }));
    const mean = run('mean', hs);
    expect(relErr(run('trimmed-mean', hs, 0), mean)).toBeLessThan(1e-6);
    expect(relErr(run('centered-clip', hs), mean)).toBeLessThan(0.05);
  });

  it('25% attackers: robust modes keep the honest direction, the mean does not', async () => {
    const hs = (await honestGrads(6)).map((h, i) => ({ ...h, id: `h${i}` }));
    const honestMean = run('mean', hs);
    const rng = new Rng(5);
    const attacks: Record<string, (g: Float32Array) => Float32Array> = {
      'sign-flip x10': (g) => g.map((v) => -10 * v),
      'scale x1000': (g) => g.map((v) => 1000 * v),
      noise: (g) => {
        const rms = Math.sqrt(g.reduce((a, v) => a + v * v, 0) / g.length);
        return g.map(() => 50 * rms * rng.normal());
      },
    };
    for (const [name, f] of Object.entries(attacks)) {
      const bad = [0, 1].map((i) => ({ g: f(hs[i].g), tokens: hs[i].tokens, id: `bad${i}` }));
      const all = [...hs, ...bad]; // 2 of 8 = 25%
      expect(cos(run('mean', all), honestMean), `mean under ${name}`).toBeLessThan(0.9);
      expect(cos(run('trimmed-mean', all), honestMean), `trimmed-mean under ${name}`).toBeGreaterThan(0.9);
      expect(cos(run('centered-clip', all), honestMean), `centered-clip under ${name}`).toBeGreaterThan(0.9);
    }
  });

  it('drops results whose norm exceeds norm-limit x the median and reports them; remove() drops a worker exactly', async () => {
    const hs = (await honestGrads(4)).map((h, i) => ({ ...h, id: `h${i}` }));
    const P = hs[0].g.length;
    const a = createRobustAggregator('trimmed-mean', P, { trim: 0, normLimit: 4 });
    a.begin(0);
    for (const h of hs) a.add(h.g, h.tokens, h.id);
    a.add(hs[0].g.map((v) => 100 * v), hs[0].tokens, 'huge');
    expect(a.heldBytes).toBe(5 * P * 4); // k x params x 4 bytes, documented
    const out = new Float32Array(P);
    a.finish(out);
    expect(a.lastReport.dropped.map((d) => d.workerId)).toEqual(['huge']);
    expect(relErr(out, run('mean', hs))).toBeLessThan(1e-6);
    a.begin(1);
    for (const h of hs) a.add(h.g, h.tokens, h.id);
    expect(a.remove('h3')).toBe(1);
    a.finish(out);
    expect(relErr(out, run('mean', hs.slice(0, 3)))).toBeLessThan(1e-6);
  });
});
