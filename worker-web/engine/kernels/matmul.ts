// Tiled matmul: C[M,N] = op(A)[M,K] * op(B)[K,N] (+ bias[N]) (+ C) (+ R), with fused epilogues:
//   epilogue 'gelu'      also writes G = gelu(C)            (MLP fc forward: fch and fch_gelu)
//   epilogue 'geluGrad'  C = (A B) * gelu'(X), X = pre-act   (MLP proj backward into dfch)
//   addend R             C = A B + bias + R                  (projection + residual in one pass)
// Each fusion removes a dispatch and a full read+write of an [N, C] or [N, 4C] tensor.
//
// Pattern from tfjs-backend-webgpu matmul_packed and gpu.cpp: a 16x16 workgroup computes a
// TMxTN output tile, each thread an RMxRN register block held as vec4 accumulators; per K-step
// of TK the workgroup stages a TMxTK slice of op(A) and a TKxTN slice of op(B) in workgroup
// memory (k-major, vec4 over m / n; 8 KiB for both configs, under the 16 KiB default). Every
// thread stages exactly one 4-vector of each operand per K-step, with a vec4 global load when the
// contiguous dimension is a multiple of 4. Transposed operands are read transposed while staging,
// never materialised. Shapes are baked in as constants; bounds checks are generated only for the
// dimensions that do not divide the tile. Each output is summed in a fixed order by one thread
// (no split-K, no atomics): deterministic.
//
// Two configs: 64x64 (4x4 per thread, TK=16) for small/medium outputs, and 128x128 (8x8 per
// thread, TK=8; twice the FMAs per shared-memory load) when the output has enough tiles to fill
// a large GPU. Thread columns are interleaved (thread tx owns vec4 columns tx, tx+16, ...) so
// neighbouring threads read neighbouring shared-memory words and store coalesced.

import { f32, grid1d, type KernelSpec } from './wgsl-util.ts';
import { pickTile } from '../tiling.ts';

export interface MatmulShape {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  accumulate: boolean;
  /** Add R[M,N] (same layout as C) in the epilogue: the residual connection. */
  addend?: boolean;
  /** 'gelu': also write G = gelu(C); 'geluGrad': multiply by gelu'(X[M,N]). */
  epilogue?: 'none' | 'gelu' | 'geluGrad';
  /** Batched, strided operands (attention per (b, h) head): see StridedBatch. */
  strided?: StridedBatch;
  /** Scale the product (before bias/addend). */
  alpha?: number;
  /**
   * op(A) is triangular with zeros the K loop can skip: 'lower' = op(A)[m,k] = 0 for k > m
   * (causal probabilities), 'upper' = 0 for k < m (their transpose).
   */
  triA?: 'lower' | 'upper';
  /** Output tiles entirely above the diagonal are not computed (causal scores, never read). */
  skipUpper?: boolean;
  /**
   * Deterministic split-K: grid z = splitK slices of K (each a multiple of the K-step); slice z
   * writes its partial product to C at offset z*M*N (C is then a [splitK, M, N] scratch), and
   * splitKReduceSpec sums the slices in a fixed order. Not with strided/bias/epilogues.
   */
  splitK?: number;
  /** Override the K-step of the 128x128 config (8 or 16; 16 fills the 16 KiB of workgroup memory). */
  kStep128?: 8 | 16;
  /** Force a tile config (tests); default picks by output size. */
  tile?: 64 | 128;
}

/**
 * grid z = outer * inner batches; batch z = (o, i) = (z / inner, z % inner). Operand X of batch
 * (o, i) starts at element X[0] + o * X[1] + i * X[2] of its binding and has row stride ldX.
 */
export interface StridedBatch {
  outer: number;
  inner: number;
  a: [number, number, number];
  b: [number, number, number];
  c: [number, number, number];
  lda: number;
  ldb: number;
  ldc: number;
}

interface TileConfig {
  TM: number;
  TN: number;
  TK: number;
  RM: number;
  RN: number;
}
const TILE64: TileConfig = { TM: 64, TN: 64, TK: 16, RM: 4, RN: 4 };
const TILE128: TileConfig = { TM: 128, TN: 128, TK: 8, RM: 8, RN: 8 };

export function matmulSpec(s: MatmulShape): KernelSpec {
  const { M, N, K, transA, transB, bias, accumulate } = s;
  const addend = !!s.addend;
  const epi = s.epilogue ?? 'none';
  const tile = s.tile ?? pickTile(M, N);
  const { TM, TN, TK, RM, RN } = tile === 128 ? { ...TILE128, TK: s.kStep128 ?? TILE128.TK } : TILE64;
  const evenM = M % TM === 0;
  const evenN = N % TN === 0;
  const evenK = K % TK === 0;
  const sb = s.strided;
  const S = s.splitK ?? 1;
  if (S > 1 && (sb || bias || addend || accumulate || (s.epilogue ?? 'none') !== 'none' || s.triA || s.skipUpper)) {
    throw new Error('matmulSpec: splitK combines with none of strided/bias/addend/accumulate/epilogue/triA/skipUpper (bug)');
  }
  const label = `matmul${tile}${tile === 128 && TK !== TILE128.TK ? `k${TK}` : ''}_${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}_${M}x${N}x${K}${sb ? `_x${sb.outer * sb.inner}` : ''}${bias ? '_bias' : ''}${accumulate ? '_acc' : ''}${addend ? '_add' : ''}${epi === 'none' ? '' : '_' + epi}${s.triA ? '_tri' + s.triA : ''}${s.skipUpper ? '_causal' : ''}${S > 1 ? `_split${S}` : ''}`;
  const LDA = sb?.lda ?? (transA ? M : K);
  const LDB = sb?.ldb ?? (transB ? K : N);
  const LDC = sb?.ldc ?? N;
  const all4 = (xs: number[]) => xs.every((x) => x % 4 === 0);

  // Which operands can be read as vec4: the contiguous dimension, the row stride and every
  // batch offset are multiples of 4.
  const vecA = (transA ? M % 4 === 0 : K % 4 === 0) && all4([LDA, ...(sb?.a ?? [])]);
  const vecB = (transB ? K % 4 === 0 : N % 4 === 0) && all4([LDB, ...(sb?.b ?? [])]);
  const vecC = N % 4 === 0 && all4([LDC, ...(sb?.c ?? [])]);
  // Bindings in order: A, B, [bias], [R], [X], C, [G].
  const arr = (v: boolean) => (v ? 'array<vec4<f32>>' : 'array<f32>');
  const names: Array<[string, 'read' | 'rw', string]> = [
    ['A', 'read', arr(vecA)],
    ['B', 'read', arr(vecB)],
    ...(bias ? [['bias', 'read', arr(vecC)] as [string, 'read', string]] : []),
    ...(addend ? [['R', 'read', arr(vecC)] as [string, 'read', string]] : []),
    ...(epi === 'geluGrad' ? [['X', 'read', arr(vecC)] as [string, 'read', string]] : []),
    ['C', 'rw', arr(vecC)],
    ...(epi === 'gelu' ? [['G', 'rw', arr(vecC)] as [string, 'rw', string]] : []),
  ];
  const bindings: KernelSpec['bindings'] = names.map((n) => n[1]);
  const decl = names
    .map(([n, k, t], i) => `@group(0) @binding(${i}) var<storage, ${k === 'rw' ? 'read_write' : 'read'}> ${n}: ${t};`)
    .join('\n');
  const geluFns = `const GELU_SCALE = 0.7978845608028654;
fn gelu4(x: vec4<f32>) -> vec4<f32> {
  return 0.5 * x * (1.0 + tanh(clamp(GELU_SCALE * (x + 0.044715 * x * x * x), vec4<f32>(-10.0), vec4<f32>(10.0))));
}
fn gelu_grad4(x: vec4<f32>) -> vec4<f32> {
  let th = tanh(clamp(GELU_SCALE * (x + 0.044715 * x * x * x), vec4<f32>(-10.0), vec4<f32>(10.0)));
  return 0.5 * (1.0 + th) + x * 0.5 * (1.0 - th * th) * GELU_SCALE * (1.0 + 3.0 * 0.044715 * x * x);
}
fn gelu1(x: f32) -> f32 { return gelu4(vec4<f32>(x)).x; }
fn gelu_grad1(x: f32) -> f32 { return gelu_grad4(vec4<f32>(x)).x; }`;

  const cond = (parts: Array<string | false>) => parts.filter(Boolean).join(' && ');
  /**
   * Load 4 consecutive elements of a row-major [R, S] operand X at (r, s..s+3) into `dst`
   * (s is a multiple of 4). rOk/sOk: whether those dimensions need guards.
   */
  const load4 = (X: string, vec: boolean, r: string, s: string, R: string, S: string, guardR: boolean, guardS: boolean, dst: string) => {
    const LD = X === 'A' ? 'LDA' : 'LDB';
    const OFF = X === 'A' ? 'offA' : 'offB';
    if (vec) {
      const g = cond([guardR && `${r} < ${R}`, guardS && `${s} < ${S}`]);
      const read = `${X}[(${OFF} + ${r} * ${LD} + ${s}) / 4u]`;
      return g ? `if (${g}) { ${dst} = ${read}; } else { ${dst} = vec4<f32>(0.0); }` : `${dst} = ${read};`;
    }
    const lines: string[] = [];
    for (let j = 0; j < 4; j++) {
      const g = cond([guardR && `${r} < ${R}`, guardS && `${s} + ${j}u < ${S}`]);
      const idx = `${OFF} + ${r} * ${LD} + ${s} + ${j}u`;
      // select() evaluates both sides: clamp the index so a guarded-off read stays in bounds.
      lines.push(g ? `${dst}[${j}] = select(0.0, ${X}[min(${idx}, arrayLength(&${X}) - 1u)], ${g});` : `${dst}[${j}] = ${X}[${idx}];`);
    }
    return lines.join('\n      ');
  };

  const TM4 = TM / 4;
  const TN4 = TN / 4;
  // 4-vectors each thread stages per operand and K-step (TM*TK/4 vectors over 256 threads).
  const LPT = (TM * TK) / 1024;
  // op(A) tile: As[k][m] (vec4 over m). One vec4 of A per thread.
  const loadA = transA
    ? // A stored [K, M]: read 4 consecutive m at row k.
      `for (var p = 0u; p < ${LPT}u; p++) {
      let idx = lid + p * 256u;
      let kl = idx / ${TM4}u;
      let ml = (idx % ${TM4}u) * 4u;
      let k = k0 + kl;
      let m = m0 + ml;
      var v: vec4<f32>;
      ${load4('A', vecA, 'k', 'm', 'K', 'M', !evenK, !evenM, 'v')}
      As[kl * ${TM4}u + ml / 4u] = v;
    }`
    : // A stored [M, K]: read 4 consecutive k at row m; scatter into the k-major tile.
      `for (var p = 0u; p < ${LPT}u; p++) {
      let idx = lid + p * 256u;
      let ml = idx / ${TK / 4}u;
      let kl = (idx % ${TK / 4}u) * 4u;
      let m = m0 + ml;
      let k = k0 + kl;
      var v: vec4<f32>;
      ${load4('A', vecA, 'm', 'k', 'M', 'K', !evenM, !evenK, 'v')}
      for (var j = 0u; j < 4u; j++) { As[(kl + j) * ${TM4}u + ml / 4u][ml % 4u] = v[j]; }
    }`;
  // op(B) tile: Bs[k][n] (vec4 over n).
  const loadB = transB
    ? // B stored [N, K]: read 4 consecutive k at row n; scatter.
      `for (var p = 0u; p < ${LPT}u; p++) {
      let idx = lid + p * 256u;
      let nl = idx / ${TK / 4}u;
      let kl = (idx % ${TK / 4}u) * 4u;
      let n = n0 + nl;
      let k = k0 + kl;
      var v: vec4<f32>;
      ${load4('B', vecB, 'n', 'k', 'N', 'K', !evenN, !evenK, 'v')}
      for (var j = 0u; j < 4u; j++) { Bs[(kl + j) * ${TN4}u + nl / 4u][nl % 4u] = v[j]; }
    }`
    : // B stored [K, N]: read 4 consecutive n at row k.
      `for (var p = 0u; p < ${LPT}u; p++) {
      let idx = lid + p * 256u;
      let kl = idx / ${TN4}u;
      let nl = (idx % ${TN4}u) * 4u;
      let k = k0 + kl;
      let n = n0 + nl;
      var v: vec4<f32>;
      ${load4('B', vecB, 'k', 'n', 'K', 'N', !evenK, !evenN, 'v')}
      Bs[kl * ${TN4}u + nl / 4u] = v;
    }`;

  const RM4 = RM / 4;
  const RN4 = RN / 4;
  // Thread (tx, ty) owns rows ty*RM .. ty*RM+RM-1 and vec4 columns tx + 16*c, c < RN/4.
  const inner: string[] = [];
  for (let r = 0; r < RM4; r++) inner.push(`let a${r} = As[kk * ${TM4}u + ty * ${RM4}u + ${r}u];`);
  for (let c = 0; c < RN4; c++) inner.push(`let b${c} = Bs[kk * ${TN4}u + ${c * 16}u + tx];`);
  for (let r = 0; r < RM4; r++) {
    for (let i = 0; i < 4; i++) {
      for (let c = 0; c < RN4; c++) {
        const idx = (r * 4 + i) * RN4 + c;
        inner.push(`acc[${idx}] = fma(vec4<f32>(a${r}[${i}]), b${c}, acc[${idx}]);`);
      }
    }
  }

  const alpha = s.alpha !== undefined && s.alpha !== 1 ? ` * ${f32(s.alpha)}` : '';
  const storeOne = vecC
    ? `let o = (offC + row * LDC + col) / 4u;
        var r = acc[i * ${RN4}u + c]${alpha};
        ${bias ? 'r += bias[col / 4u];' : ''}
        ${accumulate ? 'r += C[o];' : ''}
        ${addend ? 'r += R[o];' : ''}
        ${epi === 'geluGrad' ? 'r = r * gelu_grad4(X[o]);' : ''}
        C[o] = r;
        ${epi === 'gelu' ? 'G[o] = gelu4(r);' : ''}`
    : `for (var j = 0u; j < 4u; j++) {
          ${evenN ? '' : 'if (col + j >= N) { break; }'}
          let o = offC + row * LDC + col + j;
          var r = acc[i * ${RN4}u + c][j]${alpha};
          ${bias ? 'r += bias[col + j];' : ''}
          ${accumulate ? 'r += C[o];' : ''}
          ${addend ? 'r += R[o];' : ''}
          ${epi === 'geluGrad' ? 'r = r * gelu_grad1(X[o]);' : ''}
          C[o] = r;
          ${epi === 'gelu' ? 'G[o] = gelu1(r);' : ''}
        }`;
  const store = `
  for (var i = 0u; i < ${RM}u; i++) {
    let row = m0 + ty * ${RM}u + i;
    ${evenM ? '' : 'if (row >= M) { break; }'}
    for (var c = 0u; c < ${RN4}u; c++) {
      let col = n0 + (c * 16u + tx) * 4u;
      ${evenN ? '' : 'if (col >= N) { continue; }'}
      {
        ${storeOne}
      }
    }
  }`;

  const off = (x: [number, number, number] | undefined) =>
    x ? `${x[0]}u + (wid.z / ${sb!.inner}u) * ${x[1]}u + (wid.z % ${sb!.inner}u) * ${x[2]}u` : '0u';
  // Split-K: K-step-aligned slice per z; the partial goes to its own [M, N] block of C.
  const kChunk = Math.ceil(K / S / TK) * TK;
  const batchOffsets = `  let offA = ${off(sb?.a)};
  let offB = ${off(sb?.b)};
  let offC = ${S > 1 ? `wid.z * ${M * N}u` : off(sb?.c)};`;
  const code = `// ${label}
const M = ${M}u;
const N = ${N}u;
const K = ${K}u;
const LDA = ${LDA}u;
const LDB = ${LDB}u;
const LDC = ${LDC}u;
${decl}
${epi === 'none' ? '' : geluFns}
var<workgroup> As: array<vec4<f32>, ${(TK * TM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(TK * TN) / 4}>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let tx = lidv.x;
  let ty = lidv.y;
  let lid = ty * 16u + tx;
  let m0 = wid.y * ${TM}u;
  let n0 = wid.x * ${TN}u;
${batchOffsets}
  ${s.skipUpper ? `if (n0 > m0 + ${TM - 1}u) { return; } // above the diagonal: never read` : ''}
  var acc: array<vec4<f32>, ${RM * RN4}>;
  let kBegin = ${s.triA === 'upper' ? `(m0 / ${TK}u) * ${TK}u` : S > 1 ? `wid.z * ${kChunk}u` : '0u'};
  let kEnd = ${s.triA === 'lower' ? `min(K, m0 + ${TM}u)` : S > 1 ? `min(K, kBegin + ${kChunk}u)` : 'K'};
  for (var k0 = kBegin; k0 < kEnd; k0 += ${TK}u) {
    ${loadA}
    ${loadB}
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      ${inner.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${store}
}
`;
  return { label, code, bindings, grid: [Math.ceil(N / TN), Math.ceil(M / TM), sb ? sb.outer * sb.inner : S] };
}

/**
 * Sum of the split-K slices in slice order (deterministic): out[i] (+)= sum_z parts[z*n + i].
 * `accumulate` adds to out (e.g. on top of another contribution).
 */
export function splitKReduceSpec(S: number, n: number, accumulate = false): KernelSpec {
  const groups = Math.ceil(n / 256);
  return {
    label: `splitk_reduce_${S}x${n}${accumulate ? '_acc' : ''}`,
    bindings: ['read', 'rw'],
    grid: grid1d(groups),
    code: `@group(0) @binding(0) var<storage, read> parts: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + li;
  if (i >= ${n}u) { return; }
  var s = ${accumulate ? 'out[i]' : '0.0'};
  for (var z = 0u; z < ${S}u; z++) { s += parts[z * ${n}u + i]; }
  out[i] = s;
}`,
  };
}
