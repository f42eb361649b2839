// Verification by re-computation in dpo mode (coordinator/security/verify*.ts): the verification
// thread re-runs the DPO step (shared/model/dpo.ts) with the task's reference log-probs and beta,
// so an honest DPO result passes, and a worker that scales its gradient, or computes the LM loss of
// the rows instead of the DPO loss, is caught.

import { afterAll, describe, expect, it } from 'vitest';
import { Verifier } from '../../coordinator/security/verify.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { dpoForwardBackward } from '../../shared/model/dpo.ts';
import { dpoFixtureSetup } from '../reference/dpo-fixture.ts';

const s = dpoFixtureSetup();
const verifier = new Verifier(s.config, 0.05, 1);
afterAll(() => verifier.close());

describe('verification of DPO results', () => {
  it('passes an honest result; refuses a scaled gradient and an LM gradient of the same rows', async () => {
    const cpu = createCpuBackend(s.config);
    await cpu.setParams(s.reference);
    const ref = Float32Array.from(await cpu.sequenceLogProbs(s.batch));
    await cpu.setParams(s.policy);
    const honest = await dpoForwardBackward(cpu, { batch: s.batch, pairs: s.pairs, ref, beta: s.beta });
    const batch = { ...s.batch, dpo: { beta: s.beta, refLogProbs: ref } };

    const ok = await verifier.check(s.policy, 1, batch, honest.loss, honest.grads);
    expect(ok.ok).toBe(true);
    expect(ok.relErr).toBeLessThan(1e-5);

    const scaled = await verifier.check(s.policy, 1, batch, honest.loss, honest.grads.map((g) => g * 1.5));
    expect(scaled.ok).toBe(false);
    expect(scaled.relErr).toBeCloseTo(0.5, 3);

    const lm = await cpu.forwardBackward(s.batch); // ignores the pairs: next-token loss of the rows
    const lazy = await verifier.check(s.policy, 1, batch, honest.loss, lm.grads);
    expect(lazy.ok).toBe(false);
    expect(lazy.relErr).toBeGreaterThan(0.5);
  }, 60_000);
});
