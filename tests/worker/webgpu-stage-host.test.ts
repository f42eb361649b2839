// The Node worker's WebGPU host runs a pipeline stage on the WebGPU engine (not the CPU fallback):
// createNodeHost('webgpu').createStage builds createWebGpuStageBackend on the host's device. A
// middle stage (one block: the fewest pipelines to compile on SwiftShader) matches the CPU stage.
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../shared/model/config.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildStageTable, gatherStage } from '../../shared/model/stage.ts';
import { Rng } from '../../shared/rng.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';

const model: ModelConfig = { vocabSize: 11, contextLength: 8, nLayer: 3, nHead: 2, nEmbd: 8 };

function close(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1e-6 + 1e-3 * Math.abs(want[i])));
  expect(worst, what).toBeLessThanOrEqual(1);
}

describe('Node WebGPU host: pipeline stage', () => {
  it('createStage runs the stage on the engine and matches the CPU stage (output, grads, dIn)', async () => {
    const host = await createNodeHost('webgpu');
    const spec = { from: 1, to: 2 };
    const st = await host.createStage!(model, spec, () => undefined);
    const cpu = createCpuStageBackend(model, spec);
    try {
      expect(st.name).toBe('webgpu');
      const params = gatherStage(buildStageTable(model, spec), initParameters(model, 5));
      await st.setParams(params);
      await cpu.setParams(params);
      const rng = new Rng(9);
      const B = 2, T = 5;
      const acts = Float32Array.from({ length: B * T * model.nEmbd }, () => rng.normal());
      const dOut = Float32Array.from({ length: B * T * model.nEmbd }, () => rng.normal() * 0.01);
      close(await st.forward({ B, T, acts }), await cpu.forward({ B, T, acts }), 'stage output');
      const g = await st.forwardBackward({ B, T, acts }, dOut);
      const c = await cpu.forwardBackward({ B, T, acts }, dOut);
      close(g.grads, c.grads, 'stage grads');
      close(g.dIn!, c.dIn!, 'stage dIn');
      expect(g.gradNorm).toBeCloseTo(c.gradNorm, 4);
      expect([g.nonFinite, g.loss, g.tokens]).toEqual([0, undefined, undefined]);
    } finally {
      st.dispose();
      cpu.dispose();
    }
  }, 120_000);
});
