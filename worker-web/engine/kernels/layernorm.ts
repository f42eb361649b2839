// LayerNorm forward and backward, one workgroup per row (two-pass mean/variance like llm.c for
// accuracy). The weight/bias gradients are column reductions over rows (reduce.ts), done by a
// separate kernel so that no two rows ever add into the same element.

import { f32, grid1d, ROW_INDEX, ROW_MAIN_ARGS, treeReduce, type KernelSpec } from './wgsl-util.ts';

const WG = 64;

export function layernormForwardSpec(N: number, C: number, eps: number): KernelSpec {
  return {
    label: `layernorm_forward_${N}x${C}`,
    bindings: ['read', 'read', 'read', 'rw', 'rw', 'rw'],
    grid: grid1d(N),
    code: `@group(0) @binding(0) var<storage, read> inp: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;
const C = ${C}u;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(${ROW_MAIN_ARGS}) {
  ${ROW_INDEX}
  if (row >= ${N}u) { return; }
  let base = row * C;
  var s = 0.0;
  for (var c = li; c < C; c += ${WG}u) { s += inp[base + c]; }
  let m = red_sum(s, li) / f32(C);
  var v = 0.0;
  for (var c = li; c < C; c += ${WG}u) { let d = inp[base + c] - m; v += d * d; }
  let rs = 1.0 / sqrt(red_sum(v, li) / f32(C) + ${f32(eps)});
  for (var c = li; c < C; c += ${WG}u) {
    out[base + c] = (inp[base + c] - m) * rs * weight[c] + bias[c];
  }
  if (li == 0u) { mean[row] = m; rstd[row] = rs; }
}`,
  };
}

/**
 * dinp (+)= (w*dout - mean(w*dout) - norm*mean(w*dout*norm)) * rstd. With `accumulate` it adds
 * in place to dinp (the residual stream's gradient), otherwise it overwrites (first use).
 */
export function layernormBackwardSpec(N: number, C: number, accumulate = true): KernelSpec {
  return {
    label: `layernorm_backward_${N}x${C}${accumulate ? '_acc' : ''}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'rw'],
    grid: grid1d(N),
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dinp: array<f32>;
const C = ${C}u;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(${ROW_MAIN_ARGS}) {
  ${ROW_INDEX}
  if (row >= ${N}u) { return; }
  let base = row * C;
  let m = mean[row];
  let rs = rstd[row];
  var a = 0.0;
  var b = 0.0;
  for (var c = li; c < C; c += ${WG}u) {
    let norm = (inp[base + c] - m) * rs;
    let dn = weight[c] * dout[base + c];
    a += dn;
    b += dn * norm;
  }
  let dnorm_mean = red_sum(a, li) / f32(C);
  let dnorm_norm_mean = red_sum(b, li) / f32(C);
  for (var c = li; c < C; c += ${WG}u) {
    let norm = (inp[base + c] - m) * rs;
    let dn = weight[c] * dout[base + c];
    dinp[base + c] = ${accumulate ? 'dinp[base + c] + ' : ''}(dn - dnorm_mean - norm * dnorm_norm_mean) * rs;
  }
}`,
  };
}
