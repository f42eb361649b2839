// @jax-js/jax as a second peer, if it runs in Node: it requests its own device from
// navigator.gpu (the same adapter as ours; its init() takes no device). A failure is reported
// with the reason, never hidden.

import type { MatmulShape } from './shapes.ts';
import type { MatmulInputs, MatmulSubject } from './inputs.ts';

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

/**
 * jit-compiled matmul on the shared inputs. jax-js is LAZY: a result's kernels are submitted only
 * when it is realised (data(), blockUntilReady()), and a result disposed before that is never
 * computed at all. So every iteration's result is realised (blockUntilReady, not awaited at once)
 * and kept until its work is done; at most DEPTH are in flight, so memory stays bounded while the
 * GPU queue stays full. Inputs are passed as .ref (an op consumes its arguments).
 */
const DEPTH = 8;

export async function jaxMatmul(p: JaxPeer, s: MatmulShape, x: MatmulInputs): Promise<MatmulSubject> {
  const { jax } = p;
  const np = jax.numpy;
  const a = np.array(x.a).reshape(s.transA ? [s.k, s.m] : [s.m, s.k]);
  const b = np.array(x.b).reshape(s.transB ? [s.n, s.k] : [s.k, s.n]);
  await a.blockUntilReady(); // settle the uploads before timing (does not consume)
  await b.blockUntilReady();
  const f = jax.jit((u: JArray, v: JArray) => np.matmul(s.transA ? np.transpose(u) : u, s.transB ? np.transpose(v) : v));
  const inflight: Array<{ r: JArray; done: Promise<unknown> }> = [];
  let last: JArray | null = null;
  const retire = async (keep: number) => {
    while (inflight.length > keep) {
      const x = inflight.shift()!;
      await x.done;
      if (x.r === last) continue; // the newest result stays for read()
      x.r.dispose();
    }
  };
  return {
    async enqueue() {
      if (last && !inflight.some((x) => x.r === last)) last.dispose();
      const r = f(a.ref, b.ref);
      last = r;
      inflight.push({ r, done: r.blockUntilReady() });
      await retire(DEPTH);
    },
    async sync() {
      await retire(0);
    },
    async read(indices: number[]) {
      await retire(0);
      if (!last) throw new Error('jax matmul: nothing computed yet');
      const c = last;
      last = null;
      const all = (await c.data()) as ArrayLike<number>; // data() consumes c
      return indices.map((ix) => all[ix]);
    },
    dispose() {
      last?.dispose();
      a.dispose();
      b.dispose();
      f.dispose();
    },
  };
}
