// Re-computation of a worker's result on the coordinator with the CPU reference (shared/model/cpu),
// at the same parameters and micro-batch, compared within a tolerance. The relative L2 error
// ||g - g_ref|| / ||g_ref|| catches sign flips (2), noise (~1.4), scaling (|K - 1|) and lazy
// workers; the loss must agree too. WebGPU float32 kernels differ from the CPU by ~1e-5..1e-3
// relative, so the default tolerance (5e-2) leaves two orders of magnitude of margin both ways.
//
// Why CPU recompute and not redundant assignment to a second worker: the coordinator always has the
// reference, it cannot collude, and it costs no volunteer time; for a model too large to recompute
// here, the verify rate is the knob (0 disables it; norm checks and robust aggregation remain).

import type { MicroBatch } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { CpuGpt } from '../../shared/model/cpu/gpt.ts';

export interface Comparison {
  ok: boolean;
  relErr: number;
  lossErr: number;
  ms: number;
}

export class Verifier {
  private readonly gpt: CpuGpt;
  checks = 0;
  mismatches = 0;
  totalMs = 0;

  constructor(
    readonly model: ModelConfig,
    readonly tolerance: number,
  ) {
    this.gpt = new CpuGpt(model, Float32Array);
  }

  /** Re-compute (params, batch) and compare with the worker's loss and gradient. */
  check(params: Float32Array, batch: MicroBatch, loss: number, grads: Float32Array): Comparison {
    const t0 = performance.now();
    const ref = this.gpt.forward(params, batch);
    const g = new Float32Array(grads.length);
    this.gpt.backward(g);
    let diff = 0;
    let norm = 0;
    for (let i = 0; i < g.length; i++) {
      const d = grads[i] - g[i];
      diff += d * d;
      norm += g[i] * g[i];
    }
    const relErr = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-12);
    const lossErr = Math.abs(loss - ref.loss) / Math.max(1, Math.abs(ref.loss));
    const ms = performance.now() - t0;
    const ok = relErr <= this.tolerance && lossErr <= this.tolerance;
    this.checks++;
    if (!ok) this.mismatches++;
    this.totalMs += ms;
    return { ok, relErr, lossErr, ms };
  }
}
