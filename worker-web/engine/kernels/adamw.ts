// AdamW (decoupled weight decay, bias-corrected), element-wise, in place on params/m/v.
// Hyper-parameters arrive in a uniform so one pipeline serves every step and tensor.

import { grid1d, type KernelSpec } from './wgsl-util.ts';

// lr, beta1, beta2, eps, weightDecay, 1-beta1^t, 1-beta2^t, n (u32 bits), gradScale, pad x3
export const ADAMW_UNIFORM_FLOATS = 12;

/**
 * Hyper-parameter block; the element count rides in slot 7 so one pipeline serves every tensor.
 * gradScale multiplies the gradient first (global-norm clipping: min(1, maxNorm / norm)).
 */
export function adamwUniform(h: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; gradScale?: number }, step: number, n: number): Float32Array {
  const a = new Float32Array([h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, 1 - Math.pow(h.beta1, step), 1 - Math.pow(h.beta2, step), 0, h.gradScale ?? 1, 0, 0, 0]);
  new Uint32Array(a.buffer)[7] = n;
  return a;
}

/** Grid for n elements; the kernel itself is size-agnostic. */
export function adamwSpec(n: number): KernelSpec {
  return {
    label: 'adamw',
    bindings: ['rw', 'read', 'rw', 'rw', 'uniform'],
    grid: grid1d(Math.ceil(n / 256)),
    code: `@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
struct Hp { lr: f32, beta1: f32, beta2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32, n: u32, gradScale: f32, p0: f32, p1: f32, p2: f32 };
@group(0) @binding(4) var<uniform> hp: Hp;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + li;
  if (i >= hp.n) { return; }
  let g = grads[i] * hp.gradScale;
  let mi = hp.beta1 * m[i] + (1.0 - hp.beta1) * g;
  let vi = hp.beta2 * v[i] + (1.0 - hp.beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  let mhat = mi / hp.bc1;
  let vhat = vi / hp.bc2;
  let p = params[i];
  params[i] = p - hp.lr * (mhat / (sqrt(vhat) + hp.eps) + hp.wd * p);
}`,
  };
}
