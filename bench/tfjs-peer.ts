// TensorFlow.js's WebGPU backend as the benchmark peer, on OUR device (same adapter, same
// process). WEBGPU_CPU_FORWARD is turned off so small ops are not quietly run on the CPU:
// we compare GPU kernels.

import type * as tfNs from '@tensorflow/tfjs-core';
import { loadTfjs, type TfModule } from './tfjs-bundle.ts';
import type { TimingBudget } from './timing.ts';
import type { MatmulInputs, PeerMatmul } from './inputs.ts';
import { timeIt } from './timing.ts';

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

export interface MatmulShape {
  label: string;
  m: number;
  n: number;
  k: number;
  /** C = op(A) op(B) with A stored [k,m] when transA, B stored [n,k] when transB. */
  transA: boolean;
  transB: boolean;
}

/** Times tf.matMul on the shared inputs, uploaded (and settled) before timing starts. */
export async function timeTfjsMatmul(t: Tf, s: MatmulShape, x: MatmulInputs, budget: TimingBudget): Promise<PeerMatmul> {
  const a = t.tensor(x.a, s.transA ? [s.k, s.m] : [s.m, s.k], 'float32');
  const b = t.tensor(x.b, s.transB ? [s.n, s.k] : [s.k, s.n], 'float32');
  let last: tfNs.Tensor | null = null;
  try {
    const timed = await timeIt(
      () => {
        last?.dispose();
        last = t.matMul(a, b, s.transA, s.transB);
      },
      async () => {
        // A one-element read-back waits for every queued matmul (the queue is in order).
        if (!last) return;
        const probe = t.slice(last, [0, 0], [1, 1]);
        await probe.data();
        probe.dispose();
      },
      budget,
    );
    const probe = t.slice(last as unknown as tfNs.Tensor, [0, 0], [1, 1]);
    const first = (await probe.data())[0];
    probe.dispose();
    return { ...timed, first };
  } finally {
    (last as tfNs.Tensor | null)?.dispose();
    a.dispose();
    b.dispose();
  }
}
