// Issue 14: the default settings must teach the built-in task fast. This pins the improvement on a
// test-sized run: the `tiny` model trained in-process over the CPU reference with the coordinator's
// step semantics (shared/model/local-train.ts) on a reduced built-in task (addition only, 100
// held-out pairs), for a bounded number of steps at the default global batch, with the
// coordinator's DEFAULT optimizer settings (validateConfig({})). The floor is one the settings
// before issue 14 miss: measured with bench/arith/train-cpu.ts (numbers in docs/model.md).
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../coordinator/config.ts';
import { arithRevDataset } from '../../../shared/data/index.ts';
import { presetConfig } from '../../../shared/model/config.ts';
import { trainLocal } from '../../../shared/model/local-train.ts';

const STEPS = 500;
const FLOOR = 0.11;

describe('the default settings teach the built-in task (reduced, tiny model)', () => {
  it(`reaches >= ${Math.round(FLOOR * 100)}% held-out exact match on addition after ${STEPS} steps`, async () => {
    const d = validateConfig({});
    const dataset = arithRevDataset({ seed: d.seed, T: 16, tasks: ['addition'], heldOut: 100 });
    const { evals } = await trainLocal({
      model: presetConfig('tiny'), dataset, seed: d.seed, steps: STEPS, globalBatch: d.globalBatch,
      lr: d.lr, minLr: d.minLr, warmupSteps: d.warmupSteps, decaySteps: d.decaySteps, stableFraction: d.stableFraction, weightDecay: d.weightDecay,
      beta1: d.beta1, beta2: d.beta2, eps: d.eps, gradClip: d.gradClip,
    });
    const last = evals.at(-1)!;
    console.log(`arith-learning: ${STEPS} steps, held-out addition exact match ${(100 * last.result.accuracy).toFixed(0)}% (floor ${Math.round(FLOOR * 100)}%)`);
    expect(last.steps).toBe(STEPS);
    expect(last.result.total).toBe(100);
    expect(last.result.tasks.map((t) => t.task)).toEqual(['addition']);
    expect(last.result.accuracy).toBeGreaterThanOrEqual(FLOOR);
  }, 1_500_000); // ~150 s of CPU; a shared, loaded box has taken 12 minutes
});
