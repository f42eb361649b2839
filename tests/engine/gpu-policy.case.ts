// The GPU kernel policy under test: the whole model, with the policy volunteers' GPUs get
// (split-K weight gradients, two-pass column sums), against PyTorch (float64) at 1e-4 relative.
// CI has no GPU: SwiftShader would pick the software policy (neither path), so the environment
// forces the GPU policy (WebGpuBackendOptions.deviceClass = 'gpu'); it only runs slower there.
// The long fixture (tests/reference/fixture-long.ts, B*T = 1024) is what makes the policy choose
// those paths; the case proves they were chosen from the backend's own memory plan, so a policy
// that silently fell back to the software kernels fails here.
// Same contract as conformance.case.ts: framework-free, no Node imports (runs in a page too).

import type { MicroBatch, TrainingBackend } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { assertClose, assertSameBits, type ConformanceCase } from './conformance.case.ts';
import { parseFixtureBytes, type FixtureData } from './fixture-bytes.ts';

export interface GpuPolicyEnv {
  label: string;
  /** A backend with the GPU kernel policy forced (the suite disposes it). */
  createBackend(config: ModelConfig): Promise<TrainingBackend>;
  /** Bytes of tests/reference/gpt2_long.bin. */
  loadFixture(): Promise<ArrayBuffer | Uint8Array>;
  /** The engine's plan must show split-K and two-pass scratch (false for the CPU reference, which has no plan). */
  expectGpuPaths: boolean;
  /** Dispatches one recorded step must hold for this config (the engine's count; absent: not checked). */
  expectDispatches?: (config: ModelConfig) => number;
}

interface PlannedBackend extends TrainingBackend {
  plan?: { buffers: Array<{ name: string; bytes: number }> };
  dispatchesPerStep?: number;
}

function batchOf(f: FixtureData): MicroBatch {
  return { B: f.B, T: f.T, inputs: f.inputs, targets: f.targets, mask: Uint8Array.from(f.mask) };
}

export function gpuPolicyCases(env: GpuPolicyEnv): ConformanceCase[] {
  return [{
    name: `${env.label}: GPU kernel policy (split-K, two-pass column sums) vs PyTorch long fixture B=4 T=256 (logits, loss, grads, norm within 1e-4), then determinism`,
    run: async () => {
      const f = parseFixtureBytes(await env.loadFixture());
      if (f.B * f.T < 1024) throw new Error(`long fixture: B*T = ${f.B * f.T}, needs >= 1024 to reach the GPU-only kernels`);
      const b = (await env.createBackend(f.config)) as PlannedBackend;
      try {
        await b.setParams(f.params);
        const batch = batchOf(f);
        const fw = await b.forward(batch);
        assertClose('long fixture logits', fw.logits, f.logits, 1e-4, 1e-5);
        assertClose('long fixture loss (forward)', [fw.loss], [f.loss], 1e-4, 0);
        const r1 = await b.forwardBackward(batch);
        if (env.expectGpuPaths) {
          const bytes = (name: string) => b.plan?.buffers.find((x) => x.name === name)?.bytes ?? 0;
          if (!(bytes('split-K partials') > 0)) throw new Error(`GPU policy: the plan has no split-K scratch (${bytes('split-K partials')} bytes): split-K was not chosen`);
          if (!(bytes('column partials') > 0)) throw new Error(`GPU policy: the plan has no two-pass column scratch (${bytes('column partials')} bytes): two-pass sums were not chosen`);
        }
        if (env.expectDispatches) {
          const want = env.expectDispatches(f.config);
          if (b.dispatchesPerStep !== want) throw new Error(`GPU policy: ${b.dispatchesPerStep} dispatches per step, expected ${want}`);
        }
        assertClose('long fixture loss', [r1.loss], [f.loss], 1e-4, 0);
        let tokens = 0;
        for (const m of f.mask) tokens += m ? 1 : 0;
        if (r1.tokens !== tokens) throw new Error(`long fixture tokens: got ${r1.tokens}, expected ${tokens}`);
        assertClose('long fixture grads', r1.grads, f.grads, 1e-4, 1e-6);
        assertClose('long fixture grad norm', [r1.gradNorm], [f.gradNorms[0]], 1e-4, 0);
        if (r1.nonFinite !== 0) throw new Error(`long fixture: ${r1.nonFinite} non-finite gradient values, expected 0`);
        const r2 = await b.forwardBackward(batch);
        assertSameBits('GPU policy determinism grads', r1.grads, r2.grads);
      } finally {
        b.dispose();
      }
    },
  }];
}
