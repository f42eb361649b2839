// Element-wise kernels and the embedding: one thread per output element, shapes baked in.
// Everything here writes each output from exactly one thread (deterministic, no atomics).

import { grid1d, type KernelSpec } from './wgsl-util.ts';

const WG = 256;

/** Header of a 1-D kernel over `n` elements: defines `i` and returns past the end. */
function head1d(n: number): string {
  return `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WG}u + li;
  if (i >= ${n}u) { return; }`;
}

const grid = (n: number) => grid1d(Math.ceil(n / WG));

/** out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]. */
export function encoderForwardSpec(B: number, T: number, C: number): KernelSpec {
  const n = B * T * C;
  return {
    label: `encoder_forward_${B}x${T}x${C}`,
    bindings: ['read', 'read', 'read', 'rw'],
    grid: grid(n),
    code: `@group(0) @binding(0) var<storage, read> inp: array<i32>;
@group(0) @binding(1) var<storage, read> wte: array<f32>;
@group(0) @binding(2) var<storage, read> wpe: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
${head1d(n)}
  let c = i % ${C}u;
  let bt = i / ${C}u;
  let t = bt % ${T}u;
  out[i] = wte[u32(inp[bt]) * ${C}u + c] + wpe[t * ${C}u + c];
}`,
  };
}

/** dwpe[t,c] = sum_b dout[b,t,c] (fixed b order) for t < T, 0 for T <= t < maxT (all rows written). */
export function encoderBackwardWpeSpec(B: number, T: number, C: number, maxT = T): KernelSpec {
  const n = maxT * C;
  return {
    label: `encoder_backward_wpe_${B}x${T}x${C}_${maxT}`,
    bindings: ['read', 'rw'],
    grid: grid(n),
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read_write> dwpe: array<f32>;
${head1d(n)}
  var s = 0.0;
  if (i < ${T * C}u) {
    for (var b = 0u; b < ${B}u; b++) { s += dout[b * ${T * C}u + i]; }
  }
  dwpe[i] = s;
}`,
  };
}

/**
 * dwte[v,c] += sum over positions p with inp[p] == v of dout[p,c]. The positions of each vocab
 * row come as CSR (rowStart[V+1], positions[N], ascending), built on the CPU from the token ids
 * we already hold, so each (v,c) is one thread summing in a fixed order: deterministic, no atomics.
 * accumulate = false writes every row (= instead of +=): the first pipeline stage holds no LM head,
 * so nothing else has written dwte this step.
 */
export function encoderBackwardWteSpec(N: number, V: number, C: number, accumulate = true): KernelSpec {
  const n = V * C;
  return {
    label: `encoder_backward_wte_${N}x${V}x${C}${accumulate ? '' : '_set'}`,
    bindings: ['read', 'read', 'read', 'rw'],
    grid: grid(n),
    code: `@group(0) @binding(0) var<storage, read> rowStart: array<u32>;
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dwte: array<f32>;
${head1d(n)}
  let v = i / ${C}u;
  let c = i % ${C}u;
  let s0 = rowStart[v];
  let s1 = rowStart[v + 1u];
  ${accumulate ? `if (s0 == s1) { return; }
  var s = dwte[i];` : 'var s = 0.0;'}
  for (var j = s0; j < s1; j++) { s += dout[positions[j] * ${C}u + c]; }
  dwte[i] = s;
}`,
  };
}

// tanh-approximate GELU as GPT-2. tanh is clamped: some WGSL implementations compute it through
// exp and return NaN for large arguments; tanh(+-10) is already +-1 in f32.
const GELU_FNS = `const GELU_SCALE = 0.7978845608028654;
fn tanh_safe(x: f32) -> f32 { return tanh(clamp(x, -10.0, 10.0)); }`;

export function geluForwardSpec(n: number): KernelSpec {
  return {
    label: `gelu_forward_${n}`,
    bindings: ['read', 'rw'],
    grid: grid(n),
    code: `@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
${GELU_FNS}
${head1d(n)}
  let x = inp[i];
  let cube = 0.044715 * x * x * x;
  out[i] = 0.5 * x * (1.0 + tanh_safe(GELU_SCALE * (x + cube)));
}`,
  };
}

/** In place: d = gelu'(inp) * d (d holds dout on entry, dinp on exit). */
export function geluBackwardSpec(n: number): KernelSpec {
  return {
    label: `gelu_backward_${n}`,
    bindings: ['read', 'rw'],
    grid: grid(n),
    code: `@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read_write> d: array<f32>;
${GELU_FNS}
${head1d(n)}
  let x = inp[i];
  let cube = 0.044715 * x * x * x;
  let tanh_arg = GELU_SCALE * (x + cube);
  let tanh_out = tanh_safe(tanh_arg);
  let cosh_inv = 1.0 - tanh_out * tanh_out; // sech^2
  let local_grad = 0.5 * (1.0 + tanh_out) + x * 0.5 * cosh_inv * GELU_SCALE * (1.0 + 3.0 * 0.044715 * x * x);
  d[i] = local_grad * d[i];
}`,
  };
}

export function residualForwardSpec(n: number): KernelSpec {
  return {
    label: `residual_forward_${n}`,
    bindings: ['read', 'read', 'rw'],
    grid: grid(n),
    code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${head1d(n)}
  out[i] = x[i] + y[i];
}`,
  };
}
