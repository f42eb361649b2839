// Column reductions (bias and LayerNorm parameter gradients) and the gradient norm.
// All are fixed-order tree reductions: no atomics, bit-identical run to run.

import { grid1d, type KernelSpec } from './wgsl-util.ts';

// Column reductions use a 16x16 workgroup: 16 adjacent columns (coalesced reads) x 16 row lanes.
const COLS = 16;
const LANES = 16;

/**
 * Rows per workgroup in the first pass of a two-pass column reduction (GPU policy, long N): the
 * grid gets a y dimension of ceil(N / COL_BLOCK) row blocks, each writing one partial row.
 */
export const COL_BLOCK = 256;

function colReduceBody(N: number, OC: number, terms: string[], inits: string[], writes: string[], rowBlocks = false): string {
  // terms: expressions accumulated per row (may use n, c); writes: statements given sums r0..rk.
  // rowBlocks: this workgroup sums rows [wid.y*COL_BLOCK, +COL_BLOCK) only (pass 1 of 2).
  const k = terms.length;
  const n0 = rowBlocks ? `wid.y * ${COL_BLOCK}u` : '0u';
  const n1 = rowBlocks ? `min(${N}u, wid.y * ${COL_BLOCK}u + ${COL_BLOCK}u)` : `${N}u`;
  return `${Array.from({ length: k }, (_, j) => `var<workgroup> r${j}: array<f32, ${COLS * LANES}>;`).join('\n')}
@compute @workgroup_size(${COLS}, ${LANES}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let c = wid.x * ${COLS}u + l.x;
  let cc = min(c, ${OC - 1}u);
  ${inits.join('\n  ')}
  ${Array.from({ length: k }, (_, j) => `var a${j} = 0.0;`).join(' ')}
  let nEnd = ${n1};
  for (var n = ${n0} + l.y; n < nEnd; n += ${LANES}u) {
    ${terms.map((t, j) => `a${j} += ${t};`).join('\n    ')}
  }
  let me = l.y * ${COLS}u + l.x;
  ${Array.from({ length: k }, (_, j) => `r${j}[me] = a${j};`).join(' ')}
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s >>= 1u) {
    if (l.y < s) {
      ${Array.from({ length: k }, (_, j) => `r${j}[me] = r${j}[me] + r${j}[me + s * ${COLS}u];`).join(' ')}
    }
    workgroupBarrier();
  }
  if (l.y == 0u && c < ${OC}u) {
    ${writes.join('\n    ')}
  }
}`;
}

/** Pass 1 of a long column sum: parts[rb, c] = sum of dout[n, c] over row block rb. */
export function colSumPartialSpec(N: number, OC: number): KernelSpec {
  const RB = Math.ceil(N / COL_BLOCK);
  return {
    label: `colsum_partial_${N}x${OC}`,
    bindings: ['read', 'rw'],
    grid: [Math.ceil(OC / COLS), RB, 1],
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read_write> parts: array<f32>;
${colReduceBody(N, OC, [`dout[n * ${OC}u + cc]`], [], [`parts[wid.y * ${OC}u + c] = r0[l.x];`], true)}`,
  };
}

/** Pass 1 for LayerNorm: parts[rb, c] = block sum of dout*norm, parts[rb, C + c] = of dout. */
export function layernormParamPartialSpec(N: number, C: number): KernelSpec {
  const RB = Math.ceil(N / COL_BLOCK);
  return {
    label: `layernorm_param_partial_${N}x${C}`,
    bindings: ['read', 'read', 'read', 'read', 'rw'],
    grid: [Math.ceil(C / COLS), RB, 1],
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;
${colReduceBody(
  N,
  C,
  [`dout[n * ${C}u + cc] * (inp[n * ${C}u + cc] - mean[n]) * rstd[n]`, `dout[n * ${C}u + cc]`],
  [],
  [`parts[wid.y * ${2 * C}u + c] = r0[l.x];`, `parts[wid.y * ${2 * C}u + ${C}u + c] = r1[l.x];`],
  true,
)}`,
  };
}

/** Pass 2 for LayerNorm: sums the [RB, 2C] partials into dweight (first C) and dbias (last C). */
export function layernormParamFinalSpec(RB: number, C: number): KernelSpec {
  return {
    label: `layernorm_param_final_${RB}x${C}`,
    bindings: ['read', 'rw', 'rw'],
    grid: [Math.ceil(C / COLS), 1, 1],
    code: `@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;
${colReduceBody(RB, C, [`parts[n * ${2 * C}u + cc]`, `parts[n * ${2 * C}u + ${C}u + cc]`], [], ['dweight[c] = r0[l.x];', 'dbias[c] = r1[l.x];'])}`,
  };
}

/** dbias[c] = sum_n dout[n, c]. */
export function biasBackwardSpec(N: number, OC: number): KernelSpec {
  return {
    label: `bias_backward_${N}x${OC}`,
    bindings: ['read', 'rw'],
    grid: [Math.ceil(OC / COLS), 1, 1],
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>;
${colReduceBody(N, OC, [`dout[n * ${OC}u + cc]`], [], ['dbias[c] = r0[l.x];'])}`,
  };
}

/** dweight[c] = sum_n dout*norm, dbias[c] = sum_n dout, norm recomputed from inp, mean, rstd. */
export function layernormParamGradSpec(N: number, C: number): KernelSpec {
  return {
    label: `layernorm_param_grad_${N}x${C}`,
    bindings: ['read', 'read', 'read', 'read', 'rw', 'rw'],
    grid: [Math.ceil(C / COLS), 1, 1],
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbias: array<f32>;
${colReduceBody(
  N,
  C,
  [`dout[n * ${C}u + cc] * (inp[n * ${C}u + cc] - mean[n]) * rstd[n]`, `dout[n * ${C}u + cc]`],
  [],
  ['dweight[c] = r0[l.x];', 'dbias[c] = r1[l.x];'],
)}`,
  };
}

export const NORM_WG = 256;
export const NORM_PER_THREAD = 16;
/** Elements one workgroup of the norm pass covers. */
export const NORM_CHUNK = NORM_WG * NORM_PER_THREAD;

/**
 * Pass 1 of the gradient norm over `n` elements of a binding: per workgroup, the sum of squares
 * and the count of non-finite values (exponent bits all ones: WGSL does not promise NaN
 * comparisons) into partials[partialOffset + wg].
 */
export function normPartialSpec(n: number, partialOffset: number): KernelSpec {
  const groups = Math.ceil(n / NORM_CHUNK);
  return {
    label: `grad_norm_partial_${n}@${partialOffset}`,
    bindings: ['read', 'rw', 'rw'],
    grid: grid1d(groups),
    code: `@group(0) @binding(0) var<storage, read> data: array<u32>;
@group(0) @binding(1) var<storage, read_write> psum: array<f32>;
@group(0) @binding(2) var<storage, read_write> pcnt: array<u32>;
var<workgroup> rs: array<f32, ${NORM_WG}>;
var<workgroup> rc: array<u32, ${NORM_WG}>;
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let g = wid.y * nwg.x + wid.x;
  if (g >= ${groups}u) { return; }
  var s = 0.0;
  var cnt = 0u;
  for (var j = 0u; j < ${NORM_PER_THREAD}u; j++) {
    let i = g * ${NORM_CHUNK}u + j * ${NORM_WG}u + li;
    if (i < ${n}u) {
      let bits = data[i];
      if ((bits & 0x7f800000u) == 0x7f800000u) { cnt += 1u; }
      let x = bitcast<f32>(bits);
      s += x * x;
    }
  }
  rs[li] = s;
  rc[li] = cnt;
  workgroupBarrier();
  for (var st = ${NORM_WG / 2}u; st > 0u; st >>= 1u) {
    if (li < st) { rs[li] = rs[li] + rs[li + st]; rc[li] = rc[li] + rc[li + st]; }
    workgroupBarrier();
  }
  if (li == 0u) { psum[${partialOffset}u + g] = rs[0]; pcnt[${partialOffset}u + g] = rc[0]; }
}`,
  };
}

/** Pass 2: one workgroup sums `count` partials into results[1] (sum of squares, f32 bits) and results[2] (count). */
export function normFinalSpec(count: number): KernelSpec {
  return {
    label: `grad_norm_final_${count}`,
    bindings: ['read', 'read', 'rw'],
    grid: [1, 1, 1],
    code: `@group(0) @binding(0) var<storage, read> psum: array<f32>;
@group(0) @binding(1) var<storage, read> pcnt: array<u32>;
@group(0) @binding(2) var<storage, read_write> results: array<u32>;
var<workgroup> rs: array<f32, ${NORM_WG}>;
var<workgroup> rc: array<u32, ${NORM_WG}>;
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  var cnt = 0u;
  for (var i = li; i < ${count}u; i += ${NORM_WG}u) { s += psum[i]; cnt += pcnt[i]; }
  rs[li] = s;
  rc[li] = cnt;
  workgroupBarrier();
  for (var st = ${NORM_WG / 2}u; st > 0u; st >>= 1u) {
    if (li < st) { rs[li] = rs[li] + rs[li + st]; rc[li] = rc[li] + rc[li + st]; }
    workgroupBarrier();
  }
  if (li == 0u) { results[1] = bitcast<u32>(rs[0]); results[2] = rc[0]; }
}`,
  };
}
