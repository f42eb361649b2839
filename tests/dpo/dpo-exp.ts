// DPO settings explorer (docs/dpo.md "Measured"): the coordinator's DPO step in one process (epoch
// sampler over the pairs, dpoForwardBackward on the CPU reference, global-norm clip, AdamW at
// lrAt(step)), so start models and settings can be compared in seconds instead of a cluster run.
//   npx tsx tests/dpo/dpo-exp.ts --start DIR [--lr 5e-5] [--beta 0.1] [--warmup 0] [--steps 40]
//     [--batch 32] [--pairs 1200] [--pref-seed 3] [--seed 1] [--data-seed 1] [--eval-every 10]
//   npx tsx tests/dpo/dpo-exp.ts --snapshots 800,900,1000 [--sft-steps 3000] [--out /tmp/dpo-starts]
//     (trains the start model of make-start-model.ts and exports it at those steps)
// Prints one JSON line per evaluation: preference accuracy on the coordinator's held-out pairs
// (`heldAcc`) and on every held-out addition of the built-in task with both off-by-one answers
// (`arithAcc`, 400 pairs of prompts neither stage trained on), exact match on the 200 held-out
// additions (`em`).

import { parseArgs } from 'node:util';
import { exportModel } from '../../coordinator/export/export.ts';
import { importModel } from '../../coordinator/export/import.ts';
import { arithRevDataset, arithRevPairs, buildMicroBatch, EpochSampler, pairRow } from '../../shared/data/index.ts';
import { preferenceDataset } from '../../shared/data/preference-data.ts';
import type { PreferenceRow } from '../../shared/data/preference-rows.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { CpuBackend } from '../../shared/model/cpu-backend.ts';
import { CpuGpt } from '../../shared/model/cpu/gpt.ts';
import { dpoForwardBackward } from '../../shared/model/dpo.ts';
import { initParameters } from '../../shared/model/init.ts';
import { greedyAnswer } from '../../shared/model/local-train.ts';
import { AdamW, clipGradNorm, lrAt, runSchedule } from '../../shared/optim/index.ts';
import { offByOnePreferences } from './make-preferences.ts';

const { values: v } = parseArgs({
  options: Object.fromEntries(['start', 'lr', 'beta', 'warmup', 'steps', 'batch', 'pairs', 'pref-seed', 'seed', 'data-seed', 'eval-every',
    'snapshots', 'sft-steps', 'out', 'min-lr', 'decay'].map((k) => [k, { type: 'string' }])) as Record<string, { type: 'string' }>,
});
const num = (k: string, d: number) => (v[k] === undefined ? d : Number(v[k]));
const model = presetConfig('tiny');
const T = 16;
const arithHeld = arithRevPairs(1, 200, 6000, ['addition']).heldOut;
const arithPairs: PreferenceRow[] = arithHeld.flatMap((p) => [1, -1].map((o) => ({ prompt: p.prompt, chosen: p.response, rejected: String(Number(p.response) + o) })));

/** Sequence log-probs of rows (chosen, rejected, ...) of the given pairs, 32 pairs per forward. */
async function logProbs(be: CpuBackend, pairs: PreferenceRow[]): Promise<Float64Array> {
  const out = new Float64Array(2 * pairs.length);
  const src = { size: 2 * pairs.length, sample: (r: number) => pairRow(pairs[r >> 1].prompt, pairs[r >> 1][r & 1 ? 'rejected' : 'chosen'], T) };
  for (let i = 0; i < pairs.length; i += 32) {
    const ids = Array.from({ length: 2 * Math.min(32, pairs.length - i) }, (_, k) => 2 * i + k);
    out.set(await be.sequenceLogProbs(buildMicroBatch(src, ids)), 2 * i);
  }
  return out;
}

async function prefAcc(be: CpuBackend, params: Float32Array, pairs: PreferenceRow[]): Promise<number> {
  await be.setParams(params);
  const lp = await logProbs(be, pairs);
  let right = 0;
  for (let i = 0; i < pairs.length; i++) if (lp[2 * i] > lp[2 * i + 1]) right++;
  return right / pairs.length;
}

const exactMatch = (params: Float32Array) => arithHeld.filter((p) => greedyAnswer(model, params, p.prompt, T) === p.response).length / arithHeld.length;

async function report(be: CpuBackend, params: Float32Array, held: PreferenceRow[], extra: Record<string, unknown>): Promise<void> {
  const heldAcc = await prefAcc(be, params, held);
  const arithAcc = await prefAcc(be, params, arithPairs);
  console.log(JSON.stringify({ ...extra, heldAcc: +heldAcc.toFixed(3), arithAcc: +arithAcc.toFixed(3), em: exactMatch(params) }));
}

const be = new CpuBackend(model);
if (v.snapshots) {
  // The SFT run of make-start-model.ts, exported at the given steps.
  const at = new Set(v.snapshots.split(',').map(Number));
  const last = Math.max(...at);
  const dataset = arithRevDataset({ seed: 1, T, tasks: ['addition'] });
  const params = initParameters(model, 1);
  const gpt = new CpuGpt(model, Float32Array);
  const grads = new Float32Array(params.length);
  const opt = new AdamW(gpt.table, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 });
  const schedule = runSchedule({ lr: num('lr', 2e-3), minLr: num('min-lr', 2e-5), warmupSteps: 50 }, num('sft-steps', 3000));
  const sampler = new EpochSampler({ seed: 1, size: dataset.size });
  const held = preferenceDataset(offByOnePreferences(num('pairs', 1200), num('pref-seed', 3)), 'prefs', { T, seed: 1 }).held;
  for (let step = 0; step < last; step++) {
    gpt.forward(params, buildMicroBatch(dataset, sampler.next(32).ids));
    gpt.backward(grads);
    clipGradNorm(grads, 1);
    opt.step(params, grads, lrAt(step, schedule));
    if (at.has(step + 1)) {
      const dir = `${v.out ?? '/tmp/dpo-starts'}/s${step + 1}`;
      exportModel(dir, { config: model, params, step: step + 1 });
      await report(be, params, held, { sft: step + 1, dir });
    }
  }
} else {
  const start = importModel(v.start!).params;
  const beta = num('beta', 0.1);
  const steps = num('steps', 40);
  const batch = num('batch', 32);
  const ds = preferenceDataset(offByOnePreferences(num('pairs', 1200), num('pref-seed', 3)), 'prefs', { T, seed: num('seed', 1) });
  await be.setParams(start);
  const ref = await logProbs(be, ds.train);
  const params = new Float32Array(start);
  const opt = new AdamW(new CpuGpt(model).table, { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 });
  const lr = num('lr', 5e-5);
  const schedule = runSchedule({ lr, minLr: num('min-lr', lr), warmupSteps: num('warmup', 0) }, num('decay', steps));
  const sampler = new EpochSampler({ seed: num('data-seed', num('seed', 1)), size: ds.size });
  const every = num('eval-every', 10);
  await report(be, params, ds.held, { step: 0 });
  let loss = 0;
  for (let step = 0; step < steps; step++) {
    const ids = sampler.next(batch).ids;
    const refs = new Float32Array(2 * ids.length);
    for (let i = 0; i < ids.length; i++) refs.set([ref[2 * ids[i]], ref[2 * ids[i] + 1]], 2 * i);
    await be.setParams(params);
    const r = await dpoForwardBackward(be, { batch: ds.pairBatch(ids), pairs: ids.length, ref: refs, beta });
    clipGradNorm(r.grads, 1);
    opt.step(params, r.grads, lrAt(step, schedule));
    loss += r.loss;
    if ((step + 1) % every === 0) {
      await report(be, params, ds.held, { step: step + 1, loss: +(loss / every).toFixed(4) });
      loss = 0;
    }
  }
}
