// Causal attention as batched matmuls (one batch per (b, h) head, operands read in place from
// qkv / att / dqkv through strides, no copies), for long sequences where the row kernels'
// O(T) serial loops per thread dominate. Forward: S = scale Q K^T (tiles above the diagonal
// skipped), causal softmax in place, out = att V (K loop stops at the diagonal). Backward:
// datt = dout V^T, dpre = att (datt - sum att datt) scale in place, dq = dpre K,
// dk = dpre^T Q, dv = att^T dout (K loops start at the diagonal). 8 dispatches per layer instead
// of 3, every one a tiled matmul or a row kernel; all deterministic (no atomics).

import { matmulSpec, type StridedBatch } from './matmul.ts';
import { f32, grid1d, ROW_INDEX, ROW_MAIN_ARGS, treeReduce, type KernelSpec } from './wgsl-util.ts';

const WG = 64;

/** Rows of [rows, T] scores: p = softmax over t2 <= t (t = row % T), 0 above. In place. */
export function softmaxCausalSpec(rows: number, T: number): KernelSpec {
  return {
    label: `softmax_causal_${rows}x${T}`,
    bindings: ['rw'],
    grid: grid1d(rows),
    code: `@group(0) @binding(0) var<storage, read_write> s: array<f32>;
const T = ${T}u;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(${ROW_MAIN_ARGS}) {
  ${ROW_INDEX}
  if (row >= ${rows}u) { return; }
  let t = row % T;
  let base = row * T;
  var mx = -3.0e38;
  for (var j = li; j <= t; j += ${WG}u) { mx = max(mx, s[base + j]); }
  mx = red_max(mx, li);
  var sum = 0.0;
  for (var j = li; j <= t; j += ${WG}u) { sum += exp(s[base + j] - mx); }
  let inv = 1.0 / red_sum(sum, li);
  for (var j = li; j < T; j += ${WG}u) {
    s[base + j] = select(0.0, exp(s[base + j] - mx) * inv, j <= t);
  }
}`,
  };
}

/** d holds datt on entry, dpre = att * (datt - sum_j att datt) * scale on exit (0 above the diagonal). */
export function softmaxCausalBackwardSpec(rows: number, T: number, scale: number): KernelSpec {
  return {
    label: `softmax_causal_backward_${rows}x${T}`,
    bindings: ['read', 'rw'],
    grid: grid1d(rows),
    code: `@group(0) @binding(0) var<storage, read> att: array<f32>;
@group(0) @binding(1) var<storage, read_write> d: array<f32>;
const T = ${T}u;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(${ROW_MAIN_ARGS}) {
  ${ROW_INDEX}
  if (row >= ${rows}u) { return; }
  let t = row % T;
  let base = row * T;
  var s = 0.0;
  for (var j = li; j <= t; j += ${WG}u) { s += att[base + j] * d[base + j]; }
  s = red_sum(s, li);
  for (var j = li; j < T; j += ${WG}u) {
    d[base + j] = select(0.0, att[base + j] * (d[base + j] - s) * SCALE, j <= t);
  }
}
const SCALE = ${f32(scale)};`,
  };
}

export interface AttentionMatmulSpecs {
  /** [qkv, qkv, att]: S = scale Q K^T. */
  scores: KernelSpec;
  /** [att]: causal softmax in place. */
  softmax: KernelSpec;
  /** [att, qkv, out]: out = att V. */
  out: KernelSpec;
  /** [dout, qkv, dpre]: datt = dout V^T. */
  datt: KernelSpec;
  /** [att, dpre]: softmax backward in place (scale folded in). */
  dsoftmax: KernelSpec;
  /** [dpre, qkv, dqkv]: dq = dpre K. */
  dq: KernelSpec;
  /** [dpre, qkv, dqkv]: dk = dpre^T Q. */
  dk: KernelSpec;
  /** [att, dout, dqkv]: dv = att^T dout. */
  dv: KernelSpec;
}

export function attentionMatmulSpecs(B: number, T: number, C: number, NH: number, tile: (M: number, N: number) => 64 | 128 = () => 64): AttentionMatmulSpecs {
  const hs = C / NH;
  const scale = 1 / Math.sqrt(hs);
  const C3 = 3 * C;
  // Per-(b, h) element offsets [base, per b, per h] into each tensor.
  const q: [number, number, number] = [0, T * C3, hs];
  const k: [number, number, number] = [C, T * C3, hs];
  const v: [number, number, number] = [2 * C, T * C3, hs];
  const att: [number, number, number] = [0, NH * T * T, T * T];
  const y: [number, number, number] = [0, T * C, hs]; // atty / dout, [B, T, C]
  const sb = (a: [number, number, number], b: [number, number, number], c: [number, number, number], lda: number, ldb: number, ldc: number): StridedBatch =>
    ({ outer: B, inner: NH, a, b, c, lda, ldb, ldc });
  const base = { transA: false, transB: false, bias: false, accumulate: false };
  return {
    scores: matmulSpec({ ...base, M: T, N: T, K: hs, transB: true, alpha: scale, skipUpper: true, tile: tile(T, T), strided: sb(q, k, att, C3, C3, T) }),
    softmax: softmaxCausalSpec(B * NH * T, T),
    out: matmulSpec({ ...base, M: T, N: hs, K: T, triA: 'lower', tile: tile(T, hs), strided: sb(att, v, y, T, C3, C) }),
    datt: matmulSpec({ ...base, M: T, N: T, K: hs, transB: true, skipUpper: true, tile: tile(T, T), strided: sb(y, v, att, C, C3, T) }),
    dsoftmax: softmaxCausalBackwardSpec(B * NH * T, T, scale),
    dq: matmulSpec({ ...base, M: T, N: hs, K: T, triA: 'lower', tile: tile(T, hs), strided: sb(att, k, q, T, C3, C3) }),
    dk: matmulSpec({ ...base, M: T, N: hs, K: T, transA: true, triA: 'upper', tile: tile(T, hs), strided: sb(att, q, k, T, C3, C3) }),
    dv: matmulSpec({ ...base, M: T, N: hs, K: T, transA: true, triA: 'upper', tile: tile(T, hs), strided: sb(att, y, v, T, C, C3) }),
  };
}
