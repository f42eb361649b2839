// Trains on the built-in task in ONE process over OUR CPU reference (shared/model/local-train.ts:
// the coordinator's step semantics, evaluation and defaults), printing one JSON line per
// evaluation. Settings default to the coordinator's defaults (coordinator/config.ts); any can be
// overridden, e.g. the settings before issue 14:
//   npx tsx bench/arith/train-cpu.ts --preset tiny --tasks reversal --words 1500 --held-out 60 \
//     --steps 150 --eval-every 50 --lr 1e-3 --min-lr 1e-4 --warmup-steps 20 --decay-steps 10000 \
//     --weight-decay 0.01 --beta2 0.999 --stable-fraction 0 --answers plain
import { parseArgs } from 'node:util';
import { validateConfig } from '../../coordinator/config.ts';
import { arithRevDataset, type ArithRevAnswers, type ArithRevTask } from '../../shared/data/index.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { trainLocal } from '../../shared/model/local-train.ts';

const { values: v } = parseArgs({
  options: Object.fromEntries(['preset', 'tasks', 'words', 'held-out', 'steps', 'eval-every', 'seq-len', 'seed', 'global-batch', 'lr', 'min-lr',
    'warmup-steps', 'decay-steps', 'stable-fraction', 'weight-decay', 'beta1', 'beta2', 'grad-clip', 'stop-at', 'answers'].map((k) => [k, { type: 'string' as const }])),
});
const num = (k: string): number | undefined => (v[k] === undefined ? undefined : Number(v[k]));
const d = validateConfig({});
const model = presetConfig(String(v.preset ?? d.preset));
const T = num('seq-len') ?? 16;
const dataset = arithRevDataset({
  seed: num('seed') ?? d.seed, T,
  ...(v.tasks ? { tasks: String(v.tasks).split(',') as ArithRevTask[] } : {}),
  ...(v.words ? { words: num('words') } : {}),
  ...(v['held-out'] ? { heldOut: num('held-out') } : {}),
  ...(v.answers ? { answers: String(v.answers) as ArithRevAnswers } : {}),
});
const steps = num('steps') ?? 1500;
const opts = {
  model, dataset, seed: num('seed') ?? d.seed, steps, globalBatch: num('global-batch') ?? d.globalBatch,
  lr: num('lr') ?? d.lr, minLr: num('min-lr') ?? d.minLr, warmupSteps: num('warmup-steps') ?? d.warmupSteps,
  decaySteps: num('decay-steps') ?? d.decaySteps, stableFraction: num('stable-fraction') ?? d.stableFraction, weightDecay: num('weight-decay') ?? d.weightDecay,
  beta1: num('beta1') ?? d.beta1, beta2: num('beta2') ?? d.beta2, eps: d.eps, gradClip: num('grad-clip') ?? d.gradClip,
  evalEvery: num('eval-every') ?? 100, stopAtAccuracy: num('stop-at'),
};
const { model: _m, dataset: _d, ...shown } = opts;
console.log(JSON.stringify({ dataset: dataset.name, size: dataset.size, heldOut: dataset.heldOut.size, preset: v.preset ?? d.preset, T, ...shown }));
const t0 = Date.now();
await trainLocal({
  ...opts,
  onEval: (e) => console.log(JSON.stringify({
    steps: e.steps, trainLoss: +e.trainLoss.toFixed(4), acc: +e.result.accuracy.toFixed(3),
    ...Object.fromEntries(e.result.tasks.map((t) => [t.task, +t.accuracy.toFixed(3)])), s: Math.round((Date.now() - t0) / 1000),
  })),
});
