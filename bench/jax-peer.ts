// @jax-js/jax as a second peer, if it runs in Node: it requests its own device from
// navigator.gpu (the same adapter as ours; its init() takes no device). A failure is reported
// with the reason, never hidden.

import type { MatmulShape } from './tfjs-peer.ts';
import { timeIt, type TimingBudget } from './timing.ts';
import type { MatmulInputs, PeerMatmul } from './inputs.ts';

type Jax = typeof import('@jax-js/jax');
type JArray = InstanceType<Jax['Array']>;

export interface JaxPeer {
  jax: Jax;
}

export async function openJax(): Promise<JaxPeer | { error: string }> {
  try {
    const jax = await import('@jax-js/jax');
    const devices = await jax.init('webgpu');
    if (!devices.includes('webgpu')) return { error: `jax-js init('webgpu') gave devices [${devices.join(', ')}]: no WebGPU device` };
    jax.defaultDevice('webgpu');
    return { jax };
  } catch (e) {
    return { error: `jax-js failed to start in Node: ${(e as Error).message}` };
  }
}

/** jit-compiled matmul; jax-js arrays are consumed by ops (move semantics), so inputs pass .ref. */
export async function timeJaxMatmul(p: JaxPeer, s: MatmulShape, x: MatmulInputs, budget: TimingBudget): Promise<PeerMatmul> {
  const { jax } = p;
  const np = jax.numpy;
  const a = np.array(x.a).reshape(s.transA ? [s.k, s.m] : [s.m, s.k]);
  const b = np.array(x.b).reshape(s.transB ? [s.n, s.k] : [s.k, s.n]);
  await a.blockUntilReady(); // not consuming: settles the upload before timing
  await b.blockUntilReady();
  const f = jax.jit((x: JArray, y: JArray) => np.matmul(s.transA ? np.transpose(x) : x, s.transB ? np.transpose(y) : y));
  let last: JArray | null = null;
  try {
    const timed = await timeIt(
      () => {
        last?.dispose();
        last = f(a.ref, b.ref);
      },
      async () => {
        // Not consuming: waits for the pending kernels via a (zero-byte) read-back.
        if (last) await (last as JArray).blockUntilReady();
      },
      budget,
    );
    // Whole C read back (data() consumes the array): only C[0] is checked.
    const c = last as unknown as JArray;
    last = null;
    const first = (await c.data())[0] as number;
    return { ...timed, first };
  } finally {
    (last as JArray | null)?.dispose();
    a.dispose();
    b.dispose();
  }
}
