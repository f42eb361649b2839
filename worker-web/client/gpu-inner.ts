// DiLoCo inner steps on the WebGPU engine (shared/diloco/inner.ts InnerEngine): forward+backward,
// then the engine's AdamW kernel with the moments on the device, clipped through gradScale. The
// weights stay on the GPU during a round and are read back once at its end.

import type { TrainingBackend, MicroBatch } from '../../shared/backend.ts';
import { clipScale, HostInnerEngine, type InnerEngine, type InnerHyper, type InnerStepResult } from '../../shared/diloco/inner.ts';
import type { ParameterTable } from '../../shared/model/parameters.ts';
import type { WebGpuBackend } from '../engine/backend-types.ts';

export class GpuInnerEngine implements InnerEngine {
  private steps = 0;
  private readonly decayed: Set<string>;

  constructor(private readonly backend: WebGpuBackend, table: ParameterTable) {
    // Decay on linear weights only, as shared/optim decayMask().
    this.decayed = new Set(table.tensors.filter((t) => t.kind === 'weight').map((t) => t.name));
  }

  get momentSteps(): number {
    return this.steps;
  }

  setParams(p: Float32Array): Promise<void> {
    return this.backend.setParams(p);
  }

  async step(batch: MicroBatch, lr: number, h: InnerHyper): Promise<InnerStepResult> {
    const r = await this.backend.forwardBackward(batch);
    await this.backend.adamwStep({
      lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: h.weightDecay,
      decay: (name) => this.decayed.has(name),
      gradScale: clipScale(r.gradNorm, h.gradClip),
    });
    this.steps++;
    return { loss: r.loss, tokens: r.tokens, gradNorm: r.gradNorm, nonFinite: r.nonFinite };
  }

  getParams(): Promise<Float32Array> {
    return this.backend.getParams();
  }

  resetMoments(): void {
    this.backend.resetMoments();
    this.steps = 0;
  }
}

/** The inner engine for a backend: on-device AdamW when it has one, else AdamW on the host. */
export function innerEngineFor(backend: TrainingBackend, table: ParameterTable): InnerEngine {
  const b = backend as Partial<WebGpuBackend>;
  if (typeof b.adamwStep === 'function' && typeof b.getParams === 'function' && typeof b.resetMoments === 'function') {
    return new GpuInnerEngine(backend as WebGpuBackend, table);
  }
  return new HostInnerEngine(backend, table);
}
