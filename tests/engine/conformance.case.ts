// The engine conformance suite, framework-free so the same cases run under vitest in Node
// (tests/engine/conformance.node.test.ts) and inside a Chromium page (tests/engine/browser/**).
//
// Contract (agreed with the browser-runner owner):
//   conformanceCases(env) -> Array<{ name, run }>, each run() resolves on success and throws an
//   Error whose message says which kernel/tensor, which index, the values and the tolerance.
//   No vitest, no Node imports here or in anything this file imports.
//
// env.harness present  -> per-kernel cases (each WGSL kernel vs the CPU reference op, random
//                         inputs, shapes that are not tile multiples).
// env.createBackend    -> whole-model cases (fixture from PyTorch, determinism).

import type { ModelConfig } from '../../shared/model/config.ts';
import type { TrainingBackend } from '../../shared/backend.ts';
import type { KernelHarness } from '../../worker-web/engine/harness-types.ts';
import { Rng } from '../../shared/rng.ts';

export interface ConformanceEnv {
  /** Which backend the suite runs against, for messages: 'cpu' | 'webgpu-node' | 'webgpu-chromium'. */
  label: string;
  createBackend(config: ModelConfig): Promise<TrainingBackend>;
  /** The engine's KernelHarness (absent for the cpu backend: no per-kernel cases then). */
  harness?: KernelHarness;
  /** Bytes of tests/reference/gpt2_tiny.bin (Node: fs.readFile; browser: fetch). Absent: fixture cases skipped. */
  loadFixture?: () => Promise<ArrayBuffer | Uint8Array>;
}

export interface ConformanceCase {
  name: string;
  run: () => Promise<void>;
}

export function conformanceCases(env: ConformanceEnv): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const h = env.harness;
  if (h) cases.push(...matmulCases(h));
  return cases;
}

// ---------------------------------------------------------------- helpers

export function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

/** Max |a-b| / (atol + rtol*|b|) style check; throws naming the tensor and worst index. */
export function assertClose(what: string, got: ArrayLike<number>, want: ArrayLike<number>, rtol = 1e-4, atol = 1e-5): void {
  if (got.length !== want.length) throw new Error(`${what}: length ${got.length} != expected ${want.length}`);
  let worst = -1;
  let worstRatio = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    const ratio = Math.abs(g - w) / (atol + rtol * Math.abs(w));
    if (!(ratio <= 1)) {
      if (!(ratio <= worstRatio)) {
        worst = i;
        worstRatio = Number.isNaN(ratio) ? Infinity : ratio;
      }
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: mismatch at index ${worst}: got ${got[worst]}, expected ${want[worst]} ` +
        `(|diff| ${Math.abs(got[worst] - want[worst]).toExponential(3)} > atol ${atol} + rtol ${rtol} * |expected|)`,
    );
  }
}

/** Bit-identical check for determinism. */
export function assertSameBits(what: string, a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} != ${b.length}`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) throw new Error(`${what}: run 1 and run 2 differ at index ${i}: ${a[i]} vs ${b[i]} (not deterministic)`);
  }
}

// ---------------------------------------------------------------- matmul

/** Reference C = op(A) op(B) (+bias) (+C), plain triple loop in f64. */
function matmulRef(M: number, N: number, K: number, a: Float32Array, b: Float32Array, transA: boolean, transB: boolean, bias?: Float32Array, c?: Float32Array): Float32Array {
  const out = new Float32Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = bias ? bias[j] : 0;
      for (let k = 0; k < K; k++) s += (transA ? a[k * M + i] : a[i * K + k]) * (transB ? b[j * K + k] : b[k * N + j]);
      out[i * N + j] = s + (c ? c[i * N + j] : 0);
    }
  }
  return out;
}

function matmulCases(h: KernelHarness): ConformanceCase[] {
  // Shapes: exact tile multiples, ragged edges in every dimension, tiny, K not a multiple of 4.
  const shapes: Array<[number, number, number]> = [
    [64, 64, 32],
    [37, 29, 19],
    [1, 70, 5],
    [130, 3, 66],
    [65, 128, 48],
  ];
  const cases: ConformanceCase[] = [];
  for (const [M, N, K] of shapes) {
    for (const [transA, transB] of [[false, false], [false, true], [true, false]] as const) {
      const bias = !transA && (M + N) % 2 === 1;
      const accumulate = transA && M % 2 === 1;
      const name = `matmul ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} M=${M} N=${N} K=${K}${bias ? ' +bias' : ''}${accumulate ? ' +=C' : ''}`;
      cases.push({
        name,
        run: async () => {
          const rng = new Rng(M * 10007 + N * 101 + K);
          const a = randn(rng, M * K);
          const b = randn(rng, K * N);
          const bv = bias ? randn(rng, N) : undefined;
          const c = accumulate ? randn(rng, M * N) : undefined;
          const got = await h.matmul({ M, N, K, transA, transB, a, b, bias: bv, c, accumulate });
          assertClose(name, got, matmulRef(M, N, K, a, b, transA, transB, bv, c), 1e-4, 1e-4);
        },
      });
    }
  }
  return cases;
}
