// Pipeline stages are exact (issue 12 "Equivalence"): with fp32 activations, three stage workers
// (memory caps too small for the model, so the coordinator forms one 3-stage pipeline) train the
// same losses and parameters, step after step, as ONE unlimited replica on the same seed and data;
// so does a pipeline training the same steps beside a replica. (fp16 activations: pipeline-fp16.test.ts.)
// Real sockets, the product's worker loop (WorkerClient) on the CPU reference backends.
import { describe, expect, it } from 'vitest';
import { relDiff, run } from './pipeline-run.ts';

describe('pipeline stages vs one replica', () => {
  it('3 stage workers (fp32 activations) match one replica within 1e-5 per step over 10 steps', async () => {
    const one = await run({ stages: false, steps: 10, activations: 'fp32' });
    const three = await run({ stages: true, steps: 10, activations: 'fp32' });
    // The three really trained as one 3-stage pipeline, each holding a third of the blocks.
    const p = three.status.pipelines ?? [];
    expect(p).toHaveLength(1);
    expect(p[0].stages.map((s) => s.layers)).toEqual([[0, 1], [1, 2], [2, 3]]);
    expect(p[0].stages[0].embeddings && p[0].stages[2].head).toBe(true);
    const rows = three.status.workers.filter((w) => w.role === 'stage');
    expect(rows.map((w) => w.pipeline)).toEqual([p[0].id, p[0].id, p[0].id]);
    expect(three.ws.every((w) => w.stats.accepted > 0 && w.stats.tasksDone > 0)).toBe(true);
    expect(one.status.workers.every((w) => w.role === 'replica')).toBe(true);
    for (let s = 0; s < 10; s++) {
      expect(Math.abs(three.losses[s] - one.losses[s]) / one.losses[s]).toBeLessThan(1e-5);
      expect(relDiff(three.params[s], one.params[s])).toBeLessThan(1e-5);
    }
    // Training moved the parameters (the comparison is not between two unchanged vectors).
    expect(relDiff(one.params[9], one.params[0])).toBeGreaterThan(1e-3);
  }, 60_000);

  it('a pipeline and a replica train the same steps together, and still equal one replica (fp32, 1e-5)', async () => {
    const one = await run({ stages: false, steps: 6, activations: 'fp32' });
    const mixed = await run({ stages: true, replicaToo: true, steps: 6, activations: 'fp32' });
    expect(mixed.status.workers.map((w) => w.role).sort()).toEqual(['replica', 'stage', 'stage', 'stage']);
    // Counted from the workers' acks: some step took both the replica's and the pipeline's samples.
    const replicaSteps = mixed.acked[3];
    const pipelineSteps = mixed.acked[0];
    expect([...replicaSteps].some((s) => pipelineSteps.has(s))).toBe(true);
    for (let s = 0; s < 6; s++) {
      expect(Math.abs(mixed.losses[s] - one.losses[s]) / one.losses[s]).toBeLessThan(1e-5);
      expect(relDiff(mixed.params[s], one.params[s])).toBeLessThan(1e-5);
    }
  }, 60_000);

});
