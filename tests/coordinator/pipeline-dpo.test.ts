// Pipeline stages in dpo mode (issue 16 "Everything else holds in dpo mode": stages): with
// --objective dpo and fp32 activations, three stage workers (1 MiB caps: one 3-stage pipeline)
// train the same DPO losses and parameters, step after step, as ONE unlimited replica on the same
// seed, pairs and reference; the head stage computes each micro-batch's DPO loss (docs/dpo.md
// "Pipeline stages"). The planner's micro-batch (5 rows at 1.4 MiB caps) is cut to whole pairs (4
// rows), and 11 pairs per step leave a last micro-batch of one pair padded with two mask-0 rows.
// Every share is re-computed by the coordinator (--verify-rate 1: workers on probation) and none
// disagrees. Real sockets, the product's worker loop (WorkerClient) on the CPU reference backends.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { offByOnePreferences, toJsonl } from '../dpo/make-preferences.ts';
import { relDiff, run } from './pipeline-run.ts';
import { until } from './test-worker.ts';

const root = mkdtempSync(join(tmpdir(), 'pipe-dpo-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const data = join(root, 'prefs.jsonl');
writeFileSync(data, toJsonl(offByOnePreferences(120, 3)));
const STEPS = 4;
const PAIRS = 11;
const dpo = { objective: 'dpo', data, seqLen: 16, dpoBeta: 0.5, reference: 'init' };

describe('pipeline stages in dpo mode', () => {
  it(`3 stage workers (fp32) match one replica within 1e-5 per step over ${STEPS} steps; every share re-computed, none refused`, async () => {
    const one = await run({ stages: false, steps: STEPS, activations: 'fp32', batch: PAIRS, lr: 3e-3, extra: dpo });
    const three = await run({ stages: true, steps: STEPS, activations: 'fp32', batch: PAIRS, lr: 3e-3, stageCap: Math.round(1.4 * 2 ** 20), extra: { ...dpo, verifyRate: 1 } });
    expect(one.status.objective).toBe('dpo');
    const p = three.status.pipelines ?? [];
    expect(p).toHaveLength(1);
    expect(p[0].stages.map((s) => s.layers)).toEqual([[0, 1], [1, 2], [2, 3]]);
    expect(p[0].microBatch).toBe(4); // whole pairs: the planner's 5 rows rounded down
    expect(three.status.workers.filter((w) => w.role === 'stage')).toHaveLength(3);
    // Counted from the workers' side: every stage worker was acknowledged, nothing was refused
    // (a DPO head re-computed without its pairs would disagree: VERIFY_FAILED).
    for (const w of three.ws) {
      expect(w.stats.accepted).toBeGreaterThan(0);
      expect(w.stats.rejectedByCode.VERIFY_FAILED ?? 0).toBe(0);
    }
    // ...and their shares were re-computed (each stage worker's record counts verified results).
    const trust = three.status.security?.trust ?? {};
    for (const w of three.status.workers) expect(trust[w.id]?.verifiedOk ?? 0).toBeGreaterThanOrEqual(1);
    // Each stage worker is acknowledged for every step (the last ack may still be on its way).
    await until(() => three.acked.every((a) => a.size === STEPS), 10_000, 'the acks of every step at every stage worker');
    for (let s = 0; s < STEPS; s++) {
      expect(Math.abs(three.losses[s] - one.losses[s]) / one.losses[s]).toBeLessThan(1e-5);
      expect(relDiff(three.params[s], one.params[s])).toBeLessThan(1e-5);
    }
    // At step 0 the policy is the reference: every pair's loss is log 2 (the DPO loss, not the LM's).
    expect(one.losses[0]).toBeCloseTo(Math.log(2), 5);
    // Training moved the parameters, and with them the policy away from the reference (loss != log 2).
    expect(relDiff(one.params[STEPS - 1], one.params[0])).toBeGreaterThan(1e-3);
    expect(Math.abs(one.losses[STEPS - 1] - Math.log(2))).toBeGreaterThan(1e-3);
    console.log(`pipeline dpo: losses ${one.losses.map((l) => l.toFixed(6)).join(' ')}; worst relative difference per step: loss `
      + `${Math.max(...one.losses.map((l, s) => Math.abs(three.losses[s] - l) / l)).toExponential(2)}, params `
      + `${Math.max(...one.params.map((p, s) => relDiff(three.params[s], p))).toExponential(2)}`);
  }, 90_000);
});
