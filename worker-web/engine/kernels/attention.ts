// Causal multi-head attention, llm.c layout: qkv [B,T,3C] (q | k | v, head h at h*hs),
// att [B,NH,T,T] (softmax probabilities, zero above the diagonal), out [B,T,C].
//
// Backward without atomics: llm.c scatters dk/dv with +=; here it is split so every output has
// one owner thread that sums in a fixed order:
//   1) per row (b,h,t): datt[t2] = dout_t . v_t2 ; dpreatt = att * (datt - sum(att*datt)) * scale
//   2) per (b,t,h,d): dq = sum_{t2<=t} dpreatt[t,t2] k[t2];  dk = sum_{t'>=t} dpreatt[t',t] q[t'];
//                     dv = sum_{t'>=t} att[t',t] dout[t']

import { f32, grid1d, ROW_INDEX, ROW_MAIN_ARGS, treeReduce, type KernelSpec } from './wgsl-util.ts';

const WG = 64;

function dims(B: number, T: number, C: number, NH: number): string {
  const hs = C / NH;
  return `const T = ${T}u;
const C = ${C}u;
const C3 = ${3 * C}u;
const NH = ${NH}u;
const HS = ${hs}u;
const SCALE = ${f32(1 / Math.sqrt(hs))};
const ROWS = ${B * NH * T}u;`;
}

export function attentionForwardSpec(B: number, T: number, C: number, NH: number): KernelSpec {
  return {
    label: `attention_forward_${B}x${T}x${C}x${NH}`,
    bindings: ['read', 'rw', 'rw'],
    grid: grid1d(B * NH * T),
    code: `@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> att: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${dims(B, T, C, NH)}
var<workgroup> sc: array<f32, ${T}>;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(${ROW_MAIN_ARGS}) {
  ${ROW_INDEX}
  if (row >= ROWS) { return; }
  let t = row % T;
  let h = (row / T) % NH;
  let b = row / (T * NH);
  let qb = (b * T + t) * C3 + h * HS;
  var mx = -3.0e38;
  for (var t2 = li; t2 <= t; t2 += ${WG}u) {
    let kb = (b * T + t2) * C3 + C + h * HS;
    var d = 0.0;
    for (var i = 0u; i < HS; i++) { d += qkv[qb + i] * qkv[kb + i]; }
    d *= SCALE;
    sc[t2] = d;
    mx = max(mx, d);
  }
  mx = red_max(mx, li);
  var s = 0.0;
  for (var t2 = li; t2 <= t; t2 += ${WG}u) {
    let e = exp(sc[t2] - mx);
    sc[t2] = e;
    s += e;
  }
  let inv = 1.0 / red_sum(s, li);
  let ab = row * T;
  for (var t2 = li; t2 < T; t2 += ${WG}u) {
    let a = select(0.0, sc[t2] * inv, t2 <= t);
    sc[t2] = a;
    att[ab + t2] = a;
  }
  workgroupBarrier();
  for (var i = li; i < HS; i += ${WG}u) {
    var o = 0.0;
    for (var t2 = 0u; t2 <= t; t2++) { o += sc[t2] * qkv[(b * T + t2) * C3 + 2u * C + h * HS + i]; }
    out[(b * T + t) * C + h * HS + i] = o;
  }
}`,
  };
}

/** Step 1: dpreatt [B,NH,T,T] (scale folded in) from dout [B,T,C], qkv, att. */
export function attentionBackwardScoresSpec(B: number, T: number, C: number, NH: number): KernelSpec {
  return {
    label: `attention_backward_scores_${B}x${T}x${C}x${NH}`,
    bindings: ['read', 'read', 'read', 'rw'],
    grid: grid1d(B * NH * T),
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> att: array<f32>;
@group(0) @binding(3) var<storage, read_write> dpre: array<f32>;
${dims(B, T, C, NH)}
var<workgroup> sc: array<f32, ${T}>;
${treeReduce(WG)}
@compute @workgroup_size(${WG})
fn main(${ROW_MAIN_ARGS}) {
  ${ROW_INDEX}
  if (row >= ROWS) { return; }
  let t = row % T;
  let h = (row / T) % NH;
  let b = row / (T * NH);
  let db = (b * T + t) * C + h * HS;
  let ab = row * T;
  var s = 0.0;
  for (var t2 = li; t2 <= t; t2 += ${WG}u) {
    let vb = (b * T + t2) * C3 + 2u * C + h * HS;
    var d = 0.0;
    for (var i = 0u; i < HS; i++) { d += dout[db + i] * qkv[vb + i]; }
    sc[t2] = d;
    s += att[ab + t2] * d;
  }
  s = red_sum(s, li);
  for (var t2 = li; t2 < T; t2 += ${WG}u) {
    dpre[ab + t2] = select(0.0, att[ab + t2] * (sc[t2] - s) * SCALE, t2 <= t);
  }
}`,
  };
}

/** Step 2: dqkv [B,T,3C], one thread per (b,t,h,d) owning dq, dk and dv at that index. */
export function attentionBackwardQkvSpec(B: number, T: number, C: number, NH: number): KernelSpec {
  const n = B * T * C;
  return {
    label: `attention_backward_qkv_${B}x${T}x${C}x${NH}`,
    bindings: ['read', 'read', 'read', 'read', 'rw'],
    grid: grid1d(Math.ceil(n / 256)),
    code: `@group(0) @binding(0) var<storage, read> dout: array<f32>;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> att: array<f32>;
@group(0) @binding(3) var<storage, read> dpre: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;
${dims(B, T, C, NH)}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let idx = (wid.y * nwg.x + wid.x) * 256u + li;
  if (idx >= ${n}u) { return; }
  let d = idx % HS;
  let h = (idx / HS) % NH;
  let t = (idx / C) % T;
  let b = idx / (T * C);
  let hb = (b * NH + h) * T; // first row of this head in att/dpre
  var dq = 0.0;
  for (var t2 = 0u; t2 <= t; t2++) {
    dq += dpre[(hb + t) * T + t2] * qkv[(b * T + t2) * C3 + C + h * HS + d];
  }
  var dk = 0.0;
  var dv = 0.0;
  for (var t1 = t; t1 < T; t1++) {
    let r = (hb + t1) * T + t;
    dk += dpre[r] * qkv[(b * T + t1) * C3 + h * HS + d];
    dv += att[r] * dout[(b * T + t1) * C + h * HS + d];
  }
  let o = (b * T + t) * C3 + h * HS + d;
  dqkv[o] = dq;
  dqkv[o + C] = dk;
  dqkv[o + 2u * C] = dv;
}`,
  };
}
