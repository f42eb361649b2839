// TensorFlow.js's WebGPU backend as the benchmark peer, on OUR device (same adapter, same
// process). WEBGPU_CPU_FORWARD is turned off so small ops are not quietly run on the CPU:
// we compare GPU kernels.

import type * as tfNs from '@tensorflow/tfjs-core';
import { loadTfjs, type TfModule } from './tfjs-bundle.ts';
import type { MatmulShape } from './shapes.ts';
import type { MatmulInputs, MatmulSubject } from './inputs.ts';

export type Tf = TfModule;

// Kernels are registered under the backend name 'webgpu', so our device-sharing factory must
// take that name (replacing the package's own, which would request a second device).
const NAME = 'webgpu';

export async function openTfjs(device: GPUDevice, adapter: GPUAdapter): Promise<Tf> {
  const tf = await loadTfjs();
  const { WebGPUBackend } = tf;
  if (tf.findBackendFactory(NAME)) tf.removeBackend(NAME);
  tf.registerBackend(NAME, () => new WebGPUBackend(device, adapter.info), 3);
  if (!(await tf.setBackend(NAME))) throw new Error('tfjs: the webgpu backend failed to initialise on our device');
  await tf.ready();
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  return tf;
}

/** tf.matMul on the shared inputs, uploaded when the subject is made. */
export function tfjsMatmul(t: Tf, s: MatmulShape, x: MatmulInputs): MatmulSubject {
  const a = t.tensor(x.a, s.transA ? [s.k, s.m] : [s.m, s.k], 'float32');
  const b = t.tensor(x.b, s.transB ? [s.n, s.k] : [s.k, s.n], 'float32');
  let last: tfNs.Tensor | null = null;
  /** A one-element read-back waits for every queued matmul (the queue is in order). */
  const sync = async (): Promise<void> => {
    if (!last) throw new Error('tfjs matmul: nothing computed yet');
    const probe = t.slice(last, [0, 0], [1, 1]);
    await probe.data();
    probe.dispose();
  };
  const read = async (indices: number[]): Promise<number[]> => {
    if (!last) throw new Error('tfjs matmul: nothing computed yet');
    const all = await last.data();
    return indices.map((ix) => all[ix]);
  };
  return {
    enqueue() {
      last?.dispose();
      last = t.matMul(a, b, s.transA, s.transB);
    },
    sync,
    read,
    dispose() {
      last?.dispose();
      a.dispose();
      b.dispose();
    },
  };
}
