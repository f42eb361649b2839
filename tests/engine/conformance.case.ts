// The engine conformance suite, framework-free so the same cases run under vitest in Node
// (tests/engine/conformance.node.test.ts) and inside a Chromium page (tests/engine/browser/**).
//
// Why this file is long: it is the one case list both runners (Node and Chromium) execute; one
// file keeps the cases and their order identical in both.
//
// Contract (agreed with the browser-runner owner):
//   conformanceCases(env) -> Array<{ name, run }>, each run() resolves on success and throws an
//   Error whose message says which kernel/tensor, which index, the values and the tolerance.
//   Run the cases in order, one at a time (they share one device). No vitest, no Node imports
//   here or in anything this file imports.
//
// env.harness present  -> per-kernel cases: each WGSL kernel vs the CPU reference op
//                         (shared/model/cpu/ops.ts) on seeded random inputs, including shapes that
//                         are not multiples of the tile/workgroup sizes.
// env.createBackend    -> whole-model cases: the PyTorch fixture (logits, loss, grads, norm within
//                         1e-4 relative), a ragged shape against the CPU backend, masking, bad
//                         input, determinism (identical bits).

import { parameterCount, type ModelConfig } from '../../shared/model/config.ts';
import type { MicroBatch, TrainingBackend } from '../../shared/backend.ts';
import type { KernelHarness } from '../../worker-web/engine/harness-types.ts';
import { Rng } from '../../shared/rng.ts';
import * as ops from '../../shared/model/cpu/ops.ts';
import { createCpuBackend, gradStats } from '../../shared/model/cpu-backend.ts';
import { adamwStep, createAdamWState } from '../../shared/optim/adamw.ts';
import { parseFixtureBytes, type FixtureData } from './fixture-bytes.ts';
import { dpoCases } from './dpo.case.ts';

export interface ConformanceEnv {
  /** Which backend the suite runs against, for messages: 'cpu' | 'webgpu-node' | 'webgpu-chromium'. */
  label: string;
  /** A fresh backend on the environment's device (the suite disposes it). */
  createBackend(config: ModelConfig): Promise<TrainingBackend>;
  /** The engine's KernelHarness (absent for the cpu backend: no per-kernel cases then). */
  harness?: KernelHarness;
  /** Bytes of tests/reference/gpt2_tiny.bin (Node: fs.readFile; browser: fetch). Absent: fixture cases skipped. */
  loadFixture?: () => Promise<ArrayBuffer | Uint8Array>;
  /** Bytes of tests/reference/dpo_tiny.bin (the PyTorch DPO fixture). Absent: the DPO case is skipped. */
  loadDpoFixture?: () => Promise<ArrayBuffer | Uint8Array>;
  /**
   * false: leave out the ragged whole-model case (B=3 T=7 vs the CPU backend, all-masked batch, bad
   * input): a full compile of its own shapes (~35 pipelines, ~30 s on SwiftShader). webgpu-node
   * does (tests/engine/device.node.test.ts runs the same checks on a ragged shape it compiles
   * anyway), and Chromium (the same engine code; the ragged kernel shapes still run in the page
   * through the per-kernel cases). Default true (the cpu environment).
   */
  raggedModelCase?: boolean;
}

export interface ConformanceCase {
  name: string;
  run: () => Promise<void>;
}

export function conformanceCases(env: ConformanceEnv): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const h = env.harness;
  if (h) cases.push(...matmulCases(h), ...kernelCases(h));
  cases.push(...modelCases(env));
  if (env.loadDpoFixture) cases.push(...dpoCases({ ...env, loadDpoFixture: env.loadDpoFixture }, assertClose, assertSameBits));
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
    const diff = Math.abs(g - w);
    const ratio = diff === 0 ? 0 : diff / (atol + rtol * Math.abs(w));
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
  // Shapes: exact tile multiples, ragged edges in every dimension, tiny, K not a multiple of 4,
  // all dims multiples of 4 but not of the tile (vec4 loads with guards); both tile configs.
  // [M, N, K, tile, transA, transB]: exact tile multiples, ragged edges in every dimension
  // (scalar loads with guards), all dims multiples of 4 but not of the tile (vec4 loads with
  // guards), tiny; both tile configs; every transposition variant. Kept short: each shape is a
  // pipeline compile (~1 s on SwiftShader).
  const shapes: Array<[number, number, number, 64 | 128, boolean, boolean]> = [
    [64, 64, 32, 64, false, false],
    [37, 29, 19, 64, false, false],
    [37, 29, 19, 64, false, true],
    [37, 29, 19, 64, true, false],
    [1, 70, 5, 64, false, true],
    [65, 128, 48, 64, true, false],
    [128, 256, 24, 128, false, true],
    [132, 68, 20, 128, false, false],
    [132, 68, 20, 128, true, false],
    [37, 29, 19, 128, false, true],
  ];
  const cases: ConformanceCase[] = [];
  for (const [M, N, K, tile, transA, transB] of shapes) {
    {
      const bias = !transA && (M + N) % 2 === 1;
      const accumulate = transA && M % 2 === 1;
      const name = `matmul${tile} ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} M=${M} N=${N} K=${K}${bias ? ' +bias' : ''}${accumulate ? ' +=C' : ''}`;
      cases.push({
        name,
        run: async () => {
          const rng = new Rng(M * 10007 + N * 101 + K);
          const a = randn(rng, M * K);
          const b = randn(rng, K * N);
          const bv = bias ? randn(rng, N) : undefined;
          const c = accumulate ? randn(rng, M * N) : undefined;
          const got = await h.matmul({ M, N, K, transA, transB, a, b, bias: bv, c, accumulate, tile });
          assertClose(name, got, matmulRef(M, N, K, a, b, transA, transB, bv, c), 1e-4, 1e-4);
        },
      });
    }
  }
  // 128x128 tiles with a K-step of 16 (two 4-vectors staged per thread, 16 KiB of workgroup memory).
  for (const [transA, transB] of [[false, true], [true, false]] as const) {
    const [M, N, K] = [132, 68, 40];
    const name = `matmul128 K-step 16 ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} M=${M} N=${N} K=${K}`;
    cases.push({
      name,
      run: async () => {
        const rng = new Rng(M + N + K + (transA ? 1 : 2));
        const a = randn(rng, M * K);
        const b = randn(rng, K * N);
        const got = await h.matmul({ M, N, K, transA, transB, a, b, tile: 128, kStep128: 16 });
        assertClose(name, got, matmulRef(M, N, K, a, b, transA, transB), 1e-4, 1e-4);
      },
    });
  }

  // Deterministic split-K (the weight-gradient products on GPUs): ragged K, more slices than
  // K-steps (empty slices), accumulate on top of C.
  for (const [M, N, K, S, transA, accumulate] of [[37, 29, 300, 3, true, false], [64, 128, 1000, 4, true, true], [20, 30, 50, 7, false, false]] as const) {
    const name = `matmul split-K S=${S} ${transA ? 'TN' : 'NN'} M=${M} N=${N} K=${K}${accumulate ? ' +=C' : ''}`;
    cases.push({
      name,
      run: async () => {
        const rng = new Rng(M * 7 + N + K + S);
        const a = randn(rng, M * K);
        const b = randn(rng, K * N);
        const c = accumulate ? randn(rng, M * N) : undefined;
        const got = await h.matmul({ M, N, K, transA, a, b, c, accumulate, splitK: S, tile: 64 });
        assertClose(name, got, matmulRef(M, N, K, a, b, transA, false, undefined, c), 1e-4, 1e-4);
        const again = await h.matmul({ M, N, K, transA, a, b, c, accumulate, splitK: S, tile: 64 });
        assertSameBits(`${name} (determinism)`, got, again);
      },
    });
  }

  // Fused epilogues used by the training step, on ragged (scalar) and vec4 shapes.
  for (const [M, N, K, tile] of [[37, 29, 19, 64], [132, 68, 20, 128]] as const) {
    cases.push({
      name: `matmul${tile} fused: +bias +residual, +bias -> gelu, *gelu'(x) M=${M} N=${N} K=${K}`,
      run: async () => {
        const rng = new Rng(M + N + K + tile);
        const a = randn(rng, M * K);
        const b = randn(rng, K * N);
        const bias = randn(rng, N);
        const r = randn(rng, M * N);
        const x = randn(rng, M * N, 2);
        const plain = matmulRef(M, N, K, a, b, false, false, bias);
        const res = await h.matmulFused({ M, N, K, a, b, bias, r, tile });
        assertClose('matmul +residual', res.c, plain.map((v, i) => v + r[i]), 1e-4, 1e-4);
        const ge = await h.matmulFused({ M, N, K, a, b, bias, epilogue: 'gelu', tile });
        const g = new Float32Array(M * N);
        ops.geluForward(g, plain, M * N);
        assertClose('matmul gelu pre-activation', ge.c, plain, 1e-4, 1e-4);
        assertClose('matmul gelu output', ge.g!, g, 1e-4, 1e-4);
        const bt = randn(rng, N * K);
        const dy = matmulRef(M, N, K, a, bt, false, true);
        const gg = await h.matmulFused({ M, N, K, a, b: bt, transB: true, epilogue: 'geluGrad', x, tile });
        const want = new Float32Array(M * N);
        ops.geluBackward(want, x, dy, M * N);
        assertClose("matmul *gelu'(x)", gg.c, want, 1e-4, 1e-4);
      },
    });
  }
  return cases;
}

// ---------------------------------------------------------------- every other kernel vs ops.ts

function randTokens(rng: Rng, n: number, V: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.int(V);
  return a;
}

function kernelCases(h: KernelHarness): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const add = (name: string, run: () => Promise<void>) => cases.push({ name, run });

  for (const [B, T, C, V] of [[2, 5, 7, 11], [1, 3, 70, 5]] as const) {
    add(`encoder forward B=${B} T=${T} C=${C} V=${V}`, async () => {
      const rng = new Rng(11 + C);
      const inp = randTokens(rng, B * T, V);
      const wte = randn(rng, V * C);
      const wpe = randn(rng, T * C);
      const want = new Float32Array(B * T * C);
      ops.encoderForward(want, inp, wte, wpe, B, T, C);
      assertClose('encoder forward out', await h.encoderForward({ B, T, C, inp, wte, wpe }), want, 0, 0);
    });
    add(`encoder backward B=${B} T=${T} C=${C} V=${V} (repeated tokens, dwte accumulates)`, async () => {
      const rng = new Rng(13 + C);
      const inp = randTokens(rng, B * T, Math.min(V, 3)); // few distinct tokens: many positions per row
      const dout = randn(rng, B * T * C);
      const dwteIn = randn(rng, V * C);
      const dwte = new Float32Array(dwteIn);
      const dwpe = new Float32Array(T * C);
      ops.encoderBackward(dwte, dwpe, dout, inp, B, T, C);
      const got = await h.encoderBackward({ B, T, C, V, inp, dout, dwteIn });
      assertClose('encoder backward dwte', got.dwte, dwte, 1e-5, 1e-6);
      assertClose('encoder backward dwpe', got.dwpe, dwpe, 1e-5, 1e-6);
    });
  }

  for (const [N, C, twoPass] of [[7, 70, false], [3, 5, false], [65, 48, false], [600, 20, true]] as const) {
    if (!twoPass) add(`layernorm forward N=${N} C=${C}`, async () => {
      const rng = new Rng(17 + N * C);
      const inp = randn(rng, N * C, 2);
      const weight = randn(rng, C);
      const bias = randn(rng, C);
      const out = new Float32Array(N * C);
      const mean = new Float32Array(N);
      const rstd = new Float32Array(N);
      ops.layernormForward(out, mean, rstd, inp, weight, bias, N, C);
      const got = await h.layernormForward({ N, C, inp, weight, bias });
      assertClose('layernorm out', got.out, out, 1e-4, 1e-5);
      assertClose('layernorm mean', got.mean, mean, 1e-4, 1e-5);
      assertClose('layernorm rstd', got.rstd, rstd, 1e-4, 1e-5);
    });
    add(`layernorm backward N=${N} C=${C} (dinp accumulates${twoPass ? '; two-pass param grads' : ''})`, async () => {
      const rng = new Rng(19 + N * C);
      const inp = randn(rng, N * C, 2);
      const weight = randn(rng, C);
      const bias = randn(rng, C);
      const dout = randn(rng, N * C);
      const dinpIn = randn(rng, N * C);
      const out = new Float32Array(N * C);
      const mean = new Float32Array(N);
      const rstd = new Float32Array(N);
      ops.layernormForward(out, mean, rstd, inp, weight, bias, N, C);
      const dinp = new Float32Array(dinpIn);
      const dweight = new Float32Array(C);
      const dbias = new Float32Array(C);
      ops.layernormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
      const got = await h.layernormBackward({ N, C, dout, inp, weight, mean, rstd, dinpIn, twoPass });
      assertClose('layernorm backward dinp', got.dinp, dinp, 1e-4, 1e-5);
      assertClose('layernorm backward dweight', got.dweight, dweight, 1e-4, 1e-4);
      assertClose('layernorm backward dbias', got.dbias, dbias, 1e-4, 1e-4);
    });
  }

  for (const [N, OC, twoPass] of [[37, 21, false], [5, 64, false], [600, 21, true]] as const) {
    add(`bias backward N=${N} OC=${OC}${twoPass ? ' (two-pass)' : ''}`, async () => {
      const rng = new Rng(23 + N);
      const dout = randn(rng, N * OC);
      const dbias = new Float32Array(OC);
      // matmulBackward with C=1 and a zero input: only its dbias term is of interest.
      ops.matmulBackward(new Float32Array(N), new Float32Array(OC), dbias, dout, new Float32Array(N), new Float32Array(OC), N, 1, OC);
      assertClose('bias backward dbias', await h.biasBackward({ N, OC, dout, twoPass }), dbias, 1e-5, 1e-5);
    });
  }

  // impl 'rows' (one workgroup per score row) and 'matmul' (batched strided matmuls: several
  // tiles per head with T=70, vec4 paths with T=68, hs=8).
  for (const [B, T, C, NH, impl] of [[2, 5, 12, 3, 'rows'], [1, 70, 8, 2, 'rows'], [2, 5, 12, 3, 'matmul'], [1, 70, 8, 2, 'matmul'], [2, 68, 16, 2, 'matmul']] as const) {
    const shape = `B=${B} T=${T} C=${C} NH=${NH} (${impl})`;
    const setup = (seed: number) => {
      const rng = new Rng(seed);
      const qkv = randn(rng, B * T * 3 * C);
      const att = new Float32Array(B * NH * T * T);
      const out = new Float32Array(B * T * C);
      ops.attentionForward(out, null, att, qkv, B, T, C, NH);
      return { rng, qkv, att, out };
    };
    add(`attention forward ${shape}`, async () => {
      const { qkv, att, out } = setup(29 + T);
      const got = await h.attentionForward({ B, T, C, NH, qkv, impl });
      assertClose('attention forward out', got.out, out, 1e-4, 1e-5);
      assertClose('attention forward att', got.att, att, 1e-4, 1e-6);
    });
    add(`attention backward ${shape}`, async () => {
      const { rng, qkv, att } = setup(31 + T);
      const dout = randn(rng, B * T * C);
      const dqkv = new Float32Array(B * T * 3 * C);
      ops.attentionBackward(dqkv, dout, qkv, att, B, T, C, NH);
      assertClose('attention backward dqkv', await h.attentionBackward({ B, T, C, NH, dout, qkv, att, impl }), dqkv, 1e-4, 1e-5);
    });
  }

  add('gelu forward/backward n=1001 (incl. |x| up to 40: tanh must not overflow)', async () => {
    const rng = new Rng(37);
    const inp = randn(rng, 1001, 3);
    inp[0] = 40;
    inp[1] = -40;
    inp[2] = 0;
    const dout = randn(rng, 1001);
    const out = new Float32Array(1001);
    ops.geluForward(out, inp, 1001);
    assertClose('gelu forward', await h.geluForward({ inp }), out, 1e-5, 1e-6);
    const dinp = new Float32Array(1001);
    ops.geluBackward(dinp, inp, dout, 1001);
    assertClose('gelu backward', await h.geluBackward({ inp, dout }), dinp, 1e-4, 1e-5);
  });

  add('residual forward n=1001', async () => {
    const rng = new Rng(41);
    const x = randn(rng, 1001);
    const y = randn(rng, 1001);
    const out = new Float32Array(1001);
    ops.residualForward(out, x, y, 1001);
    assertClose('residual forward', await h.residualForward({ x, y }), out, 0, 0);
  });

  for (const [N, V] of [[6, 300], [3, 7]] as const) {
    add(`cross-entropy fwd+bwd N=${N} V=${V} (masked rows)`, async () => {
      const rng = new Rng(43 + V);
      const logits = randn(rng, N * V, 3);
      const targets = randTokens(rng, N, V);
      const mask = new Uint8Array(N).map((_, i) => (i % 3 === 1 ? 0 : 1));
      const probs = new Float32Array(N * V);
      const losses = new Float32Array(N);
      const { loss, tokens } = ops.crossEntropy(probs, losses, logits, targets, mask, N, V);
      const dlogits = new Float32Array(N * V);
      ops.crossEntropyBackward(dlogits, probs, targets, mask, N, V, tokens);
      const got = await h.crossEntropy({ N, V, logits, targets, mask });
      assertClose('cross-entropy losses', got.losses, losses, 1e-5, 1e-6);
      assertClose('cross-entropy loss', [got.loss], [loss], 1e-5, 1e-6);
      assertClose('cross-entropy dlogits', got.dlogits, dlogits, 1e-4, 1e-7);
    });
  }

  add('gradient norm and non-finite count (bit pattern) over 3 workgroups', async () => {
    const rng = new Rng(47);
    const data = randn(rng, 10_000);
    const finite = gradStats(data);
    const got = await h.gradNorm({ data });
    assertClose('grad norm sumSq', [got.sumSq], [finite.gradNorm ** 2], 1e-5, 0);
    if (got.nonFinite !== 0) throw new Error(`grad norm: nonFinite ${got.nonFinite} on finite data, expected 0`);
    data[5] = NaN;
    data[4097] = Infinity;
    data[9999] = -Infinity;
    const bad = await h.gradNorm({ data });
    const want = gradStats(data).nonFinite;
    if (bad.nonFinite !== want || want !== 3) throw new Error(`grad norm: nonFinite ${bad.nonFinite}, expected ${want} (3)`);
  });

  add('adamw kernel vs shared/optim adamwStep (2 steps, decay on, gradient scale 0.5 on step 2)', async () => {
    const rng = new Rng(53);
    const n = 777;
    const params = randn(rng, n);
    const hyper = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
    const lr = 3e-3;
    const ref = new Float32Array(params);
    const state = createAdamWState(n);
    let gp: Float32Array = params;
    let m: Float32Array = new Float32Array(n);
    let v: Float32Array = new Float32Array(n);
    for (let step = 1; step <= 2; step++) {
      const grads = randn(rng, n);
      const gradScale = step === 2 ? 0.5 : 1; // clipping factor, applied on the GPU
      adamwStep(ref, grads.map((g) => g * gradScale), state, lr, hyper, new Uint8Array(n).fill(1));
      const got = await h.adamw({ params: gp, grads, m, v, lr, ...hyper, step, gradScale });
      ({ params: gp, m, v } = got);
    }
    assertClose('adamw params', gp, ref, 1e-5, 1e-7);
    assertClose('adamw m', m, state.m, 1e-5, 1e-7); // m ~ 0.1: 1e-7 is f32 cancellation in b1*m + (1-b1)*g
    assertClose('adamw v', v, state.v, 1e-4, 1e-10);
  });

  return cases;
}

// ---------------------------------------------------------------- the whole model

function fixtureBatch(fx: FixtureData): MicroBatch {
  return { B: fx.B, T: fx.T, inputs: fx.inputs, targets: fx.targets, mask: Uint8Array.from(fx.mask) };
}

/** Self-describing batch: token at (b,t) is (5*(b*T+t) + 1) mod V, so a token names its position. */
function describingBatch(B: number, T: number, V: number, maskEvery = 4): MicroBatch {
  const n = B * T;
  const tok = (i: number) => (5 * i + 1) % V;
  return {
    B, T,
    inputs: Int32Array.from({ length: n }, (_, i) => tok(i)),
    targets: Int32Array.from({ length: n }, (_, i) => tok(i + 1)),
    mask: Uint8Array.from({ length: n }, (_, i) => (i % maskEvery === 0 ? 0 : 1)),
  };
}

async function withBackend<R>(env: ConformanceEnv, config: ModelConfig, f: (b: TrainingBackend) => Promise<R>): Promise<R> {
  const b = await env.createBackend(config);
  try {
    return await f(b);
  } finally {
    b.dispose();
  }
}

function modelCases(env: ConformanceEnv): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  let fx: FixtureData | undefined;
  const fixture = async () => (fx ??= parseFixtureBytes(await env.loadFixture!()));
  if (env.loadFixture) {
    cases.push({
      name: `${env.label}: forward+backward vs PyTorch fixture (logits, loss, grads, norm within 1e-4 relative), then determinism`,
      run: async () => {
        const f = await fixture();
        await withBackend(env, f.config, async (b) => {
          await b.setParams(f.params);
          const batch = fixtureBatch(f);
          const fw = await b.forward(batch);
          assertClose('fixture logits', fw.logits, f.logits, 1e-4, 1e-5);
          assertClose('fixture loss (forward)', [fw.loss], [f.loss], 1e-4, 0);
          const r1 = await b.forwardBackward(batch);
          assertClose('fixture loss', [r1.loss], [f.loss], 1e-4, 0);
          let tokens = 0;
          for (const m of f.mask) tokens += m ? 1 : 0;
          if (r1.tokens !== tokens) throw new Error(`fixture tokens: got ${r1.tokens}, expected ${tokens}`);
          assertClose('fixture grads', r1.grads, f.grads, 1e-4, 1e-6);
          assertClose('fixture grad norm', [r1.gradNorm], [f.gradNorms[0]], 1e-4, 0);
          if (r1.nonFinite !== 0) throw new Error(`fixture: ${r1.nonFinite} non-finite gradient values, expected 0`);
          const r2 = await b.forwardBackward(batch);
          assertSameBits('determinism grads', r1.grads, r2.grads);
          assertSameBits('determinism loss', new Float32Array([r1.loss]), new Float32Array([r2.loss]));
        });
      },
    });
  }

  // A second shape (ragged: B*T not a tile multiple, T < contextLength) against the CPU
  // backend; tiny preset with a 2-layer override to keep SwiftShader fast.
  const config: ModelConfig = { vocabSize: 257, contextLength: 64, nLayer: 2, nHead: 4, nEmbd: 48 };
  if (env.raggedModelCase !== false) cases.push({
    name: `${env.label}: ragged micro-batch B=3 T=7 vs the CPU backend; all-masked batch; bad input changes nothing`,
    run: async () => {
      const rng = new Rng(61);
      const params = randn(rng, parameterCount(config), 0.05);
      const batch = describingBatch(3, 7, config.vocabSize);
      const cpu = createCpuBackend(config);
      await cpu.setParams(params);
      const want = await cpu.forwardBackward(batch);
      await withBackend(env, config, async (b) => {
        await b.setParams(params);
        const got = await b.forwardBackward(batch);
        assertClose('ragged loss', [got.loss], [want.loss], 1e-4, 0);
        assertClose('ragged grads', got.grads, want.grads, 1e-3, 1e-6);
        assertClose('ragged grad norm', [got.gradNorm], [want.gradNorm], 1e-4, 0);

        const none = await b.forwardBackward({ ...batch, mask: new Uint8Array(21) });
        if (none.loss !== 0 || none.tokens !== 0) throw new Error(`all-masked batch: loss ${none.loss}, tokens ${none.tokens}, expected 0, 0`);
        if (none.gradNorm !== 0) throw new Error(`all-masked batch: grad norm ${none.gradNorm}, expected 0`);

        const bad = { ...batch, inputs: Int32Array.from(batch.inputs) };
        bad.inputs[4] = config.vocabSize; // out of range
        let threw = '';
        try {
          await b.forwardBackward(bad);
        } catch (e) {
          threw = (e as { code?: string }).code ?? String(e);
        }
        if (threw !== 'ERR_TOKEN_RANGE') throw new Error(`bad token: expected ERR_TOKEN_RANGE, got ${threw || 'no error'}`);
        const again = await b.forwardBackward(batch);
        assertSameBits('after rejected input, grads', again.grads, got.grads);
      });
    },
  });
  return cases;
}
