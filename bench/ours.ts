// Our engine's side of the benchmark.
// Matmul: the engine's own kernel spec (matmulSpec) run by its KernelRuntime on device-resident
// buffers, one dispatch per iteration, each iteration its own submit (no batching advantage
// over tfjs), synchronised by a 4-byte read-back.
// Step: the engine's TrainingBackend (createWebGpuBackend) on the same device.

import { KernelRuntime } from '../worker-web/engine/kernel.ts';
import { createWebGpuBackend } from '../worker-web/engine/index.ts';
import type { ModelConfig } from '../shared/model/config.ts';
import type { TrainingBackend } from '../shared/backend.ts';
import type { MatmulShape } from './shapes.ts';
import type { MatmulInputs, MatmulSubject } from './inputs.ts';

function storage(device: GPUDevice, data: Float32Array | number, label: string): GPUBuffer {
  const size = typeof data === 'number' ? data * 4 : data.byteLength;
  const buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label });
  if (typeof data !== 'number') device.queue.writeBuffer(buf, 0, data as Float32Array<ArrayBuffer>);
  return buf;
}

export function oursMatmul(device: GPUDevice, s: MatmulShape, x: MatmulInputs): MatmulSubject {
  const rt = new KernelRuntime(device);
  // rt.matmul applies the engine's per-device tile policy (what training uses), not the GPU default.
  const spec = rt.matmul({ M: s.m, N: s.n, K: s.k, transA: s.transA, transB: s.transB, bias: false, accumulate: false });
  const a = storage(device, x.a, 'bench A');
  const b = storage(device, x.b, 'bench B');
  const c = storage(device, s.m * s.n, 'bench C');
  const staging = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'bench staging' });
  const d = rt.prepare(spec, [a, b, c]);
  /** C at the given flat indices, one 4-byte copy each; waits for all queued work (the queue is in order). */
  const read = async (indices: number[]): Promise<number[]> => {
    const out = device.createBuffer({ size: 4 * Math.max(1, indices.length), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'bench probes' });
    try {
      const enc = device.createCommandEncoder({ label: 'bench readback' });
      indices.forEach((ix, q) => enc.copyBufferToBuffer(c, ix * 4, out, q * 4, 4));
      device.queue.submit([enc.finish()]);
      await out.mapAsync(GPUMapMode.READ);
      return [...new Float32Array(out.getMappedRange().slice(0))].slice(0, indices.length);
    } finally {
      out.destroy();
    }
  };
  /** A 4-byte read-back: the cheapest way to wait for the queue inside a timed sample. */
  const sync = async (): Promise<void> => {
    const enc = device.createCommandEncoder({ label: 'bench sync' });
    enc.copyBufferToBuffer(c, 0, staging, 0, 4);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    staging.unmap();
  };
  return {
    label: spec.label,
    enqueue() {
      const enc = device.createCommandEncoder({ label: spec.label });
      const pass = enc.beginComputePass({ label: spec.label });
      rt.encode(pass, d);
      pass.end();
      device.queue.submit([enc.finish()]);
    },
    sync,
    read,
    dispose() {
      for (const buf of [a, b, c, staging]) buf.destroy();
    },
  };
}

/** The engine's TrainingBackend on the benchmark's device (shared with tfjs), plan built up front. */
export async function oursBackend(device: GPUDevice, config: ModelConfig, B: number, T: number): Promise<{ backend: TrainingBackend; dispatchesPerStep: () => number | null }> {
  const backend = await createWebGpuBackend(config, { device, maxMicroBatch: { B, T } });
  return { backend, dispatchesPerStep: () => backend.dispatchesPerStep || null };
}
