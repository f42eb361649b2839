// --mode diloco plans: 20 B/param exact (weights, gradients, moments, round-start copy), then
// activations; a worker that fits a sync replica but not the round state is told so.
import { describe, expect, it } from 'vitest';
import { presetConfig, parameterCount } from '../../shared/model/config.ts';
import { planWorker } from '../../shared/memory/plan.ts';
import { planRoundWorker } from '../../shared/memory/round-plan.ts';

describe('round plan', () => {
  const model = presetConfig('small');
  const P = parameterCount(model);
  it('reserves exactly 20 B/param and fits activations in the rest', () => {
    const p = planRoundWorker(model, { userCapBytes: 256 * 2 ** 20 }, { seqLen: 64 });
    expect(p.role).toBe('round');
    expect(p.breakdown.weights + p.breakdown.gradients + p.breakdown.optimizer).toBe(20 * P);
    expect(p.breakdown.activations).toBeLessThanOrEqual(256 * 2 ** 20 - 20 * P);
    expect(p.reason).toMatch(/20 B\/param.*moments 8.*round-start copy 4/);
    expect(p.microBatch).toBeLessThanOrEqual(planWorker(model, { userCapBytes: 256 * 2 ** 20 }, { seqLen: 64 }).microBatch);
  });
  it('a budget with activations beside 16 B/param but not beside 20 B/param is too small for rounds', () => {
    const cap = 20 * P + 1000;
    const sync = planWorker(model, { userCapBytes: cap }, { seqLen: 16 });
    const round = planRoundWorker(model, { userCapBytes: cap }, { seqLen: 16 });
    expect(sync.role).toBe('replica');
    expect(round.role).toBe('too-small');
    expect(round.reason).toMatch(/20 B\/param/);
  });
});
