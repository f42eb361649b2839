// Tiled matmul: C[M,N] = op(A)[M,K] * op(B)[K,N] (+ bias[N]) (+ C).
//
// Pattern from tfjs-backend-webgpu matmul_packed and gpu.cpp: a 16x16 workgroup computes a
// 64x64 output tile, each thread a 4x4 register block (vec4 accumulators); per K-step of 16 the
// workgroup stages a 64x16 slice of op(A) and a 16x64 slice of op(B) in workgroup memory
// (8 KiB, well under the 16 KiB default). Transposed operands are read transposed while staging,
// never materialised. Shapes are baked in: when M, N, K divide the tile the bounds checks are not
// generated at all. Each output is summed in a fixed order by one thread: deterministic.

import { type KernelSpec } from '../kernel.ts';

export interface MatmulShape {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  bias: boolean;
  accumulate: boolean;
}

const TM = 64;
const TN = 64;
const TK = 16;

export function matmulSpec(s: MatmulShape): KernelSpec {
  const { M, N, K, transA, transB, bias, accumulate } = s;
  const evenM = M % TM === 0;
  const evenN = N % TN === 0;
  const evenK = K % TK === 0;
  const label = `matmul_${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}_${M}x${N}x${K}${bias ? '_bias' : ''}${accumulate ? '_acc' : ''}`;
  const bindings: KernelSpec['bindings'] = bias ? ['read', 'read', 'read', 'rw'] : ['read', 'read', 'rw'];
  const decl = bias
    ? `@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;`
    : `@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;`;

  // Guarded global reads: (row, col) of op(X) in logical coordinates.
  const guardA = (m: string, k: string, expr: string) =>
    evenM && evenK ? expr : `select(0.0, ${expr}, ${evenM ? '' : `${m} < M`}${!evenM && !evenK ? ' && ' : ''}${evenK ? '' : `${k} < K`})`;
  const guardB = (k: string, n: string, expr: string) =>
    evenK && evenN ? expr : `select(0.0, ${expr}, ${evenK ? '' : `${k} < K`}${!evenK && !evenN ? ' && ' : ''}${evenN ? '' : `${n} < N`})`;
  // Index clamped so an out-of-range read is still in-bounds (robust access would clamp anyway).
  const clampA = (e: string) => (evenM && evenK ? e : `min(${e}, M * K - 1u)`);
  const clampB = (e: string) => (evenK && evenN ? e : `min(${e}, N * K - 1u)`);
  const idxA = (m: string, k: string) => clampA(transA ? `${k} * M + ${m}` : `${m} * K + ${k}`);
  const idxB = (k: string, n: string) => clampB(transB ? `${n} * K + ${k}` : `${k} * N + ${n}`);

  // Staging op(A) tile [TK][TM] into As (vec4 over m). 256 threads x 4 elements = 64x16.
  const loadA = transA
    ? // A stored [K,M]: thread t reads row k = t/16, 4 consecutive m. Coalesced.
      `{
      let k = k0 + lid / 16u;
      let mq = (lid % 16u) * 4u;
      var v: vec4<f32>;
      for (var j = 0u; j < 4u; j++) {
        let m = m0 + mq + j;
        v[j] = ${guardA('m', 'k', `A[${idxA('m', 'k')}]`)};
      }
      As[(lid / 16u) * 16u + lid % 16u] = v;
    }`
    : // A stored [M,K]: thread t reads row m = t/4, 4 consecutive k; scatter into k-major tile.
      `{
      let ml = lid / 4u;
      let kq = (lid % 4u) * 4u;
      let m = m0 + ml;
      for (var j = 0u; j < 4u; j++) {
        let k = k0 + kq + j;
        As[(kq + j) * 16u + ml / 4u][ml % 4u] = ${guardA('m', 'k', `A[${idxA('m', 'k')}]`)};
      }
    }`;
  const loadB = transB
    ? // B stored [N,K]: thread t reads row n = t/4, 4 consecutive k.
      `{
      let nl = lid / 4u;
      let kq = (lid % 4u) * 4u;
      let n = n0 + nl;
      for (var j = 0u; j < 4u; j++) {
        let k = k0 + kq + j;
        Bs[(kq + j) * 16u + nl / 4u][nl % 4u] = ${guardB('k', 'n', `B[${idxB('k', 'n')}]`)};
      }
    }`
    : // B stored [K,N]: thread t reads row k = t/16, 4 consecutive n.
      `{
      let k = k0 + lid / 16u;
      let nq = (lid % 16u) * 4u;
      var v: vec4<f32>;
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + nq + j;
        v[j] = ${guardB('k', 'n', `B[${idxB('k', 'n')}]`)};
      }
      Bs[(lid / 16u) * 16u + lid % 16u] = v;
    }`;

  const store = `
  for (var i = 0u; i < 4u; i++) {
    let row = m0 + ty * 4u + i;
    ${evenM ? '' : 'if (row >= M) { break; }'}
    for (var j = 0u; j < 4u; j++) {
      let col = n0 + tx * 4u + j;
      ${evenN ? '' : 'if (col >= N) { break; }'}
      var r = acc[i][j];
      ${bias ? 'r += bias[col];' : ''}
      ${accumulate ? 'r += C[row * N + col];' : ''}
      C[row * N + col] = r;
    }
  }`;

  const code = `// ${label}
const M = ${M}u;
const N = ${N}u;
const K = ${K}u;
${decl}
var<workgroup> As: array<vec4<f32>, ${(TK * TM) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(TK * TN) / 4}>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lidv: vec3<u32>) {
  let tx = lidv.x;
  let ty = lidv.y;
  let lid = ty * 16u + tx;
  let m0 = wid.y * ${TM}u;
  let n0 = wid.x * ${TN}u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < K; k0 += ${TK}u) {
    ${loadA}
    ${loadB}
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      let a = As[kk * 16u + ty];
      let b = Bs[kk * 16u + tx];
      acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
      acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
      acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
      acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  ${store}
}
`;
  return { label, code, bindings, grid: [Math.ceil(N / TN), Math.ceil(M / TM), 1] };
}
