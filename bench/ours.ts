// Our engine's side of the benchmark. Matmul: the engine's own kernel spec (matmulSpec) run by
// its KernelRuntime on device-resident buffers, one dispatch per iteration, each iteration its
// own submit (no batching advantage over tfjs), ending with a 4-byte read-back.

import { KernelRuntime } from '../worker-web/engine/kernel.ts';
import { matmulSpec } from '../worker-web/engine/kernels/matmul.ts';
import type { MatmulShape } from './tfjs-peer.ts';
import { timeIt, type TimingBudget } from './timing.ts';
import type { MatmulInputs, PeerMatmul } from './inputs.ts';
import type { ModelConfig } from '../shared/model/config.ts';
import type { TrainingBackend } from '../shared/backend.ts';

function storage(device: GPUDevice, data: Float32Array | number, label: string): GPUBuffer {
  const size = typeof data === 'number' ? data * 4 : data.byteLength;
  const buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label });
  if (typeof data !== 'number') device.queue.writeBuffer(buf, 0, data as Float32Array<ArrayBuffer>);
  return buf;
}

/** Reads C[0] back: waits for all queued work (the queue is in order). */
async function readFirst(device: GPUDevice, src: GPUBuffer, staging: GPUBuffer): Promise<number> {
  const enc = device.createCommandEncoder({ label: 'bench readback' });
  enc.copyBufferToBuffer(src, 0, staging, 0, 4);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const v = new Float32Array(staging.getMappedRange().slice(0))[0];
  staging.unmap();
  return v;
}

export async function timeOursMatmul(device: GPUDevice, s: MatmulShape, x: MatmulInputs, budget: TimingBudget): Promise<PeerMatmul> {
  const rt = new KernelRuntime(device);
  const spec = matmulSpec({ M: s.m, N: s.n, K: s.k, transA: s.transA, transB: s.transB, bias: false, accumulate: false });
  const a = storage(device, x.a, 'bench A');
  const b = storage(device, x.b, 'bench B');
  const c = storage(device, s.m * s.n, 'bench C');
  const staging = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'bench staging' });
  try {
    const d = rt.prepare(spec, [a, b, c]);
    const timed = await timeIt(
      () => {
        const enc = device.createCommandEncoder({ label: spec.label });
        const pass = enc.beginComputePass({ label: spec.label });
        rt.encode(pass, d);
        pass.end();
        device.queue.submit([enc.finish()]);
      },
      async () => {
        await readFirst(device, c, staging);
      },
      budget,
    );
    return { ...timed, first: await readFirst(device, c, staging) };
  } finally {
    for (const x of [a, b, c, staging]) x.destroy();
  }
}


/**
 * The engine's TrainingBackend for the step, or why there is none. The engine's
 * createWebGpuBackend has not landed yet: until it does, the step reports "ours" as missing
 * rather than timing anything else under our name.
 */
export function oursStepFactory(
  _device: GPUDevice,
  _config: ModelConfig,
): (() => Promise<{ backend: TrainingBackend; dispatchesPerStep: () => number | null }>) | string {
  return 'the engine backend (worker-web/engine createWebGpuBackend) is not in the tree yet';
}
