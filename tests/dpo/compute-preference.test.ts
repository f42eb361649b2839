// The worker's compute step for preference tasks (worker-web/client/compute-preference.ts): a task
// of 3 pairs computed whole, in micro-batches of one pair, and padded to a fixed shape (as a WebGPU
// engine compiled for one (B, T) does) gives the same mean DPO loss and gradient; tokens = pairs.

import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import type { TaskMsg } from '../../shared/protocol/messages.ts';
import { computeTask } from '../../worker-web/client/compute-step.ts';
import { dpoFixtureSetup } from '../reference/dpo-fixture.ts';

describe('preference task compute step', () => {
  it('whole, per pair, and padded to a fixed shape agree', async () => {
    const s = dpoFixtureSetup();
    const cpu = createCpuBackend(s.config);
    await cpu.setParams(s.reference);
    const ref = Float32Array.from(await cpu.sequenceLogProbs(s.batch));
    await cpu.setParams(s.policy);
    const task: TaskMsg = {
      taskId: 't', step: 0, version: 0, B: s.batch.B, T: s.batch.T, inputs: s.batch.inputs, targets: s.batch.targets, mask: s.batch.mask,
      tokens: s.pairs, sampleIds: Uint32Array.from([0, 1, 2]), leaseMs: 1000, dpo: { beta: s.beta, refLogProbs: ref },
    };
    const whole = await computeTask(cpu, task, 6);
    expect(whole.tokens).toBe(3);
    for (const [mb, fixed] of [[2, false], [3, false], [4, true], [5, true]] as const) {
      const r = await computeTask(cpu, task, mb, fixed);
      expect(r.tokens).toBe(3);
      expect(r.loss).toBeCloseTo(whole.loss, 6);
      let diff = 0;
      let norm = 0;
      for (let i = 0; i < r.grads.length; i++) {
        diff = Math.max(diff, Math.abs(r.grads[i] - whole.grads[i]));
        norm = Math.max(norm, Math.abs(whole.grads[i]));
      }
      expect(diff / norm, `mb ${mb}${fixed ? ' fixed' : ''}`).toBeLessThan(1e-5);
    }
  });
});
