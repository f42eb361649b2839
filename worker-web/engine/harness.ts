// KernelHarness: runs one engine kernel on host arrays (upload, one submit, read back). The
// conformance suite uses it to check each WGSL kernel against the CPU reference op. Uses the same
// kernel specs and pipeline cache as the backend, so what is tested is what trains.

import { KernelRuntime } from './kernel.ts';
import type { KernelSpec } from './kernels/wgsl-util.ts';
import { readBack, storageBuffer, uniformBuffer, uploadBuffer } from './buffers.ts';
import type { KernelHarness, MatmulArgs, MatmulFusedArgs, AdamWArgs } from './harness-types.ts';
import { matmulSpec, splitKReduceSpec } from './kernels/matmul.ts';
import { encoderBackwardWpeSpec, encoderBackwardWteSpec, encoderForwardSpec, geluBackwardSpec, geluForwardSpec, residualForwardSpec } from './kernels/elementwise.ts';
import { layernormBackwardSpec, layernormForwardSpec } from './kernels/layernorm.ts';
import { biasBackwardSpec, colSumPartialSpec, COL_BLOCK, layernormParamFinalSpec, layernormParamGradSpec, layernormParamPartialSpec, NORM_CHUNK, normFinalSpec, normPartialSpec } from './kernels/reduce.ts';
import { attentionBackwardQkvSpec, attentionBackwardScoresSpec, attentionForwardSpec } from './kernels/attention.ts';
import { crossEntropySpec, lossReduceSpec } from './kernels/loss.ts';
import { adamwSpec, adamwUniform } from './kernels/adamw.ts';
import { attentionMatmulSpecs } from './kernels/attention-mm.ts';
import { buildEmbeddingIndex } from './embedding-index.ts';
import { LAYER_NORM_EPS } from '../../shared/model/config.ts';

type Arr = Float32Array | Int32Array | Uint32Array;

export const HARNESS_KERNELS = [
  'matmul', 'matmulFused', 'encoderForward', 'encoderBackward', 'layernormForward', 'layernormBackward', 'biasBackward',
  'attentionForward', 'attentionBackward', 'geluForward', 'geluBackward', 'residualForward', 'crossEntropy',
  'gradNorm', 'adamw',
] as const;

export function createKernelHarness(device: GPUDevice, runtime = new KernelRuntime(device)): KernelHarness {
  const temps: GPUBuffer[] = [];
  const up = (a: Arr, label: string) => {
    const b = uploadBuffer(device, a, label);
    temps.push(b);
    return b;
  };
  const out = (floats: number, label: string) => {
    const b = storageBuffer(device, floats * 4, label);
    temps.push(b);
    return b;
  };
  const uni = (a: Float32Array, label: string) => {
    const b = uniformBuffer(device, a, label);
    temps.push(b);
    return b;
  };
  /** Encode the dispatches in one pass, read back the named outputs as Float32Arrays. */
  async function run(steps: Array<[KernelSpec, GPUBuffer[]]>, reads: Array<[GPUBuffer, number]>): Promise<Float32Array[]> {
    const enc = device.createCommandEncoder({ label: 'harness' });
    const pass = enc.beginComputePass({ label: 'harness' });
    for (const [spec, bufs] of steps) runtime.encode(pass, runtime.prepare(spec, bufs));
    pass.end();
    const res = await readBack(device, enc, reads.map(([buffer, n]) => ({ buffer, bytes: n * 4 })));
    for (const b of temps.splice(0)) b.destroy();
    return res.map((r) => new Float32Array(r));
  }
  const mask32 = (m: Uint8Array) => Uint32Array.from(m);

  const h: KernelHarness = {
    kernels: HARNESS_KERNELS,
    async matmul(a: MatmulArgs) {
      const { M, N, K } = a;
      const tile = a.tile ?? runtime.tile(M, N);
      const S = a.splitK ?? (a.bias ? 1 : runtime.splitK(M, N, K));
      if (S > 1) {
        if (a.bias) throw new Error('harness matmul: splitK does not take a bias');
        const parts = out(S * M * N, 'splitk_partials');
        const c = a.c ? up(a.c, 'C') : out(M * N, 'C');
        const spec = matmulSpec({ M, N, K, transA: !!a.transA, transB: !!a.transB, bias: false, accumulate: false, tile, splitK: S });
        return (await run([[spec, [up(a.a, 'A'), up(a.b, 'B'), parts]], [splitKReduceSpec(S, M * N, !!a.accumulate), [parts, c]]], [[c, M * N]]))[0];
      }
      const spec = matmulSpec({ M, N, K, transA: !!a.transA, transB: !!a.transB, bias: !!a.bias, accumulate: !!a.accumulate, tile: a.tile ?? runtime.tile(M, N), kStep128: a.kStep128 });
      const c = a.c ? up(a.c, 'C') : out(M * N, 'C');
      const bufs = [up(a.a, 'A'), up(a.b, 'B'), ...(a.bias ? [up(a.bias, 'bias')] : []), c];
      return (await run([[spec, bufs]], [[c, M * N]]))[0];
    },
    async matmulFused(a: MatmulFusedArgs) {
      const { M, N, K } = a;
      const epilogue = a.epilogue ?? 'none';
      const spec = matmulSpec({ M, N, K, transA: !!a.transA, transB: !!a.transB, bias: !!a.bias, accumulate: !!a.accumulate, tile: a.tile ?? runtime.tile(M, N), addend: !!a.r, epilogue });
      if (epilogue === 'geluGrad' && !a.x) throw new Error('harness matmulFused: geluGrad needs x (the pre-activation)');
      const c = a.c ? up(a.c, 'C') : out(M * N, 'C');
      const g = epilogue === 'gelu' ? out(M * N, 'G') : undefined;
      const bufs = [
        up(a.a, 'A'), up(a.b, 'B'),
        ...(a.bias ? [up(a.bias, 'bias')] : []),
        ...(a.r ? [up(a.r, 'R')] : []),
        ...(epilogue === 'geluGrad' ? [up(a.x!, 'X')] : []),
        c,
        ...(g ? [g] : []),
      ];
      const res = await run([[spec, bufs]], [[c, M * N], ...(g ? [[g, M * N] as [GPUBuffer, number]] : [])]);
      return { c: res[0], g: res[1] };
    },
    async encoderForward({ B, T, C, inp, wte, wpe }) {
      const o = out(B * T * C, 'out');
      return (await run([[encoderForwardSpec(B, T, C), [up(inp, 'inp'), up(wte, 'wte'), up(wpe, 'wpe'), o]]], [[o, B * T * C]]))[0];
    },
    async encoderBackward({ B, T, C, V, inp, dout, dwteIn }) {
      const idx = buildEmbeddingIndex(inp, V);
      const dwte = dwteIn ? up(dwteIn, 'dwte') : out(V * C, 'dwte');
      const dwpe = out(T * C, 'dwpe');
      const d = up(dout, 'dout');
      const [w, p] = await run(
        [
          [encoderBackwardWteSpec(B * T, V, C), [up(idx.rowStart, 'rowStart'), up(idx.positions, 'positions'), d, dwte]],
          [encoderBackwardWpeSpec(B, T, C), [d, dwpe]],
        ],
        [[dwte, V * C], [dwpe, T * C]],
      );
      return { dwte: w, dwpe: p };
    },
    async layernormForward({ N, C, inp, weight, bias }) {
      const o = out(N * C, 'out');
      const m = out(N, 'mean');
      const r = out(N, 'rstd');
      const [a, b, c] = await run([[layernormForwardSpec(N, C, LAYER_NORM_EPS), [up(inp, 'inp'), up(weight, 'w'), up(bias, 'b'), o, m, r]]], [[o, N * C], [m, N], [r, N]]);
      return { out: a, mean: b, rstd: c };
    },
    async layernormBackward({ N, C, dout, inp, weight, mean, rstd, dinpIn, twoPass }) {
      const dinp = dinpIn ? up(dinpIn, 'dinp') : out(N * C, 'dinp');
      const dw = out(C, 'dweight');
      const db = out(C, 'dbias');
      const [d, bm, bi] = [up(dout, 'dout'), up(mean, 'mean'), up(rstd, 'rstd')];
      const x = up(inp, 'inp');
      const [a, b, c] = await run(
        [
          [layernormBackwardSpec(N, C), [d, x, up(weight, 'w'), bm, bi, dinp]],
          ...((twoPass ?? runtime.twoPassColumns(N))
            ? (() => {
                const parts = out(Math.ceil(N / COL_BLOCK) * 2 * C, 'parts');
                return [
                  [layernormParamPartialSpec(N, C), [d, x, bm, bi, parts]],
                  [layernormParamFinalSpec(Math.ceil(N / COL_BLOCK), C), [parts, dw, db]],
                ] as Array<[KernelSpec, GPUBuffer[]]>;
              })()
            : [[layernormParamGradSpec(N, C), [d, x, bm, bi, dw, db]] as [KernelSpec, GPUBuffer[]]]),
        ],
        [[dinp, N * C], [dw, C], [db, C]],
      );
      return { dinp: a, dweight: b, dbias: c };
    },
    async biasBackward({ N, OC, dout, twoPass }) {
      const o = out(OC, 'dbias');
      if (twoPass ?? runtime.twoPassColumns(N)) {
        const RB = Math.ceil(N / COL_BLOCK);
        const parts = out(RB * OC, 'parts');
        return (await run([[colSumPartialSpec(N, OC), [up(dout, 'dout'), parts]], [biasBackwardSpec(RB, OC), [parts, o]]], [[o, OC]]))[0];
      }
      return (await run([[biasBackwardSpec(N, OC), [up(dout, 'dout'), o]]], [[o, OC]]))[0];
    },
    async attentionForward({ B, T, C, NH, qkv, impl }) {
      const att = out(B * NH * T * T, 'att');
      const o = out(B * T * C, 'out');
      const q = up(qkv, 'qkv');
      const steps: Array<[KernelSpec, GPUBuffer[]]> = [];
      if (impl === 'matmul') {
        const m = attentionMatmulSpecs(B, T, C, NH, (a, b) => runtime.tile(a, b));
        steps.push([m.scores, [q, q, att]], [m.softmax, [att]], [m.out, [att, q, o]]);
      } else {
        steps.push([attentionForwardSpec(B, T, C, NH), [q, att, o]]);
      }
      const [a, b] = await run(steps, [[o, B * T * C], [att, B * NH * T * T]]);
      return { out: a, att: b };
    },
    async attentionBackward({ B, T, C, NH, dout, qkv, att, impl }) {
      const dpre = out(B * NH * T * T, 'dpreatt');
      const dqkv = out(B * T * 3 * C, 'dqkv');
      const [d, q, a] = [up(dout, 'dout'), up(qkv, 'qkv'), up(att, 'att')];
      const steps: Array<[KernelSpec, GPUBuffer[]]> = [];
      if (impl === 'matmul') {
        const m = attentionMatmulSpecs(B, T, C, NH, (x, y) => runtime.tile(x, y));
        steps.push([m.datt, [d, q, dpre]], [m.dsoftmax, [a, dpre]], [m.dq, [dpre, q, dqkv]], [m.dk, [dpre, q, dqkv]], [m.dv, [a, d, dqkv]]);
      } else {
        steps.push([attentionBackwardScoresSpec(B, T, C, NH), [d, q, a, dpre]], [attentionBackwardQkvSpec(B, T, C, NH), [d, q, a, dpre, dqkv]]);
      }
      return (await run(steps, [[dqkv, B * T * 3 * C]]))[0];
    },
    async geluForward({ inp }) {
      const o = out(inp.length, 'out');
      return (await run([[geluForwardSpec(inp.length), [up(inp, 'inp'), o]]], [[o, inp.length]]))[0];
    },
    async geluBackward({ inp, dout }) {
      const d = up(dout, 'd');
      return (await run([[geluBackwardSpec(inp.length), [up(inp, 'inp'), d]]], [[d, inp.length]]))[0];
    },
    async residualForward({ x, y }) {
      const o = out(x.length, 'out');
      return (await run([[residualForwardSpec(x.length), [up(x, 'x'), up(y, 'y'), o]]], [[o, x.length]]))[0];
    },
    async crossEntropy({ N, V, logits, targets, mask }) {
      let tokens = 0;
      for (const m of mask) tokens += m ? 1 : 0;
      const batch = uni(new Float32Array([tokens > 0 ? 1 / tokens : 0, 0, 0, 0]), 'batch');
      const lg = up(logits, 'logits');
      const losses = out(N, 'losses');
      const results = out(4, 'results');
      const [dl, ls, res] = await run(
        [
          [crossEntropySpec(N, V, true), [lg, up(targets, 'targets'), up(mask32(mask), 'mask'), batch, losses]],
          [lossReduceSpec(N), [losses, batch, results]],
        ],
        [[lg, N * V], [losses, N], [results, 4]],
      );
      return { losses: ls, loss: res[0], dlogits: dl };
    },
    async gradNorm({ data }) {
      const groups = Math.ceil(data.length / NORM_CHUNK);
      const psum = out(groups, 'psum');
      const pcnt = out(groups, 'pcnt');
      const results = out(4, 'results');
      const [res] = await run(
        [
          [normPartialSpec(data.length, 0), [up(data, 'data'), psum, pcnt]],
          [normFinalSpec(groups), [psum, pcnt, results]],
        ],
        [[results, 4]],
      );
      return { sumSq: res[1], nonFinite: new Uint32Array(res.buffer)[2] };
    },
    async adamw(a: AdamWArgs) {
      const n = a.params.length;
      const hp = adamwUniform(a, a.step, n);
      const [p, m, v] = [up(a.params, 'params'), up(a.m, 'm'), up(a.v, 'v')];
      const [po, mo, vo] = await run([[adamwSpec(n), [p, up(a.grads, 'grads'), m, v, uni(hp, 'hp')]]], [[p, n], [m, n], [v, n]]);
      return { params: po, m: mo, v: vo };
    },
    dispose() {
      for (const b of temps.splice(0)) b.destroy();
    },
  };
  return h;
}
