// Writes the committed starting model of the DPO end-to-end test (tests/dpo/start-tiny/): the
// `tiny` preset trained by OUR CPU reference (shared/model/local-train.ts: the coordinator's step
// semantics and defaults) on the arithmetic part of the built-in task (two-digit addition,
// arith-rev seed 1, T = 16), exported as a Hugging Face directory (f32) that `--init-from` and
// `--reference DIR` load. Prints one JSON line per evaluation (held-out exact match).
//   npx tsx tests/dpo/make-start-model.ts [--steps 930] [--decay-steps 3000] [--out tests/dpo/start-tiny]
// The committed model: 930 steps of a 3000-step cosine (the run stopped in the middle of learning
// addition: greedy exact match 0.645 on the 200 held-out additions, the right sum preferred to an
// off-by-one one 88.5% of the time on them, so preferences have something left to teach;
// docs/dpo.md "Measured" has the neighbouring steps). Takes ~2 min on a quiet 2-core box.
// The test itself never trains the start model.

import { parseArgs } from 'node:util';
import { exportModel } from '../../coordinator/export/export.ts';
import { arithRevDataset } from '../../shared/data/index.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { trainLocal } from '../../shared/model/local-train.ts';

export const START_MODEL_TASK = { seed: 1, T: 16, tasks: ['addition'] as const };

const { values: v } = parseArgs({ options: { steps: { type: 'string' }, 'decay-steps': { type: 'string' }, out: { type: 'string' }, 'eval-every': { type: 'string' } } });
const steps = Number(v.steps ?? 930);
const decaySteps = Number(v['decay-steps'] ?? 3000);
const out = v.out ?? 'tests/dpo/start-tiny';
const model = presetConfig('tiny');
const dataset = arithRevDataset({ seed: START_MODEL_TASK.seed, T: START_MODEL_TASK.T, tasks: [...START_MODEL_TASK.tasks] });
const t0 = Date.now();
const { params, evals } = await trainLocal({
  model, dataset, seed: 1, steps, globalBatch: 32, lr: 2e-3, minLr: 2e-5, warmupSteps: 50, decaySteps,
  weightDecay: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, gradClip: 1, evalEvery: Number(v['eval-every'] ?? 500),
  onEval: (e) => console.log(JSON.stringify({ steps: e.steps, trainLoss: +e.trainLoss.toFixed(4), exactMatch: e.result.accuracy, s: Math.round((Date.now() - t0) / 1000) })),
});
exportModel(out, { config: model, params, step: steps });
console.log(JSON.stringify({ wrote: out, steps, exactMatch: evals.at(-1)?.result.accuracy }));
