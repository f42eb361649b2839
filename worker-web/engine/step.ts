// Records the GPT-2 forward and backward (llm.c gpt2_forward / gpt2_backward order) as a fixed
// list of prepared dispatches for one (B,T): buffers allocated once, pipelines and bind groups
// built once, then every step is: write the batch, encode the list in ONE compute pass, copy the
// gradient + results to a staging buffer, ONE submit, map. Nothing is read back in between.
//
// The list is recorded for a pipeline stage, blocks [from, to) (shared/model/stage.ts); the whole
// model is the stage [0, L), the same code and the same dispatches as before stages existed. A
// stage after the first reads its input activations from `stageIn` (written from the wire) where
// the first runs the encoder; a stage before the last stops at its last block's output
// (`stageOut`), and its backward starts from `dres` written with the next stage's dIn instead of
// the loss; a stage after the first ends its backward with dres = dIn (read back) instead of
// running the encoder backward.

import type { ModelConfig } from '../../shared/model/config.ts';
import { LAYER_NORM_EPS } from '../../shared/model/config.ts';
import type { BlockTensorSuffix } from '../../shared/model/parameters.ts';
import type { StageSpec } from '../../shared/model/stage.ts';
import { KernelRuntime, type BufferSlice, type Dispatch } from './kernel.ts';
import type { KernelSpec } from './kernels/wgsl-util.ts';
import { storageBuffer } from './buffers.ts';
import { columnScratchFloats, splitKScratchFloats, type PaddedLayout } from './plan.ts';
import { matmulSpec, splitKReduceSpec, type MatmulShape } from './kernels/matmul.ts';
import { encoderBackwardWpeSpec, encoderBackwardWteSpec, encoderForwardSpec } from './kernels/elementwise.ts';
import { layernormBackwardSpec, layernormForwardSpec } from './kernels/layernorm.ts';
import { biasBackwardSpec, colSumPartialSpec, COL_BLOCK, layernormParamFinalSpec, layernormParamGradSpec, layernormParamPartialSpec, NORM_CHUNK, normFinalSpec, normPartialSpec } from './kernels/reduce.ts';
import { attentionBackwardQkvSpec, attentionBackwardScoresSpec, attentionForwardSpec } from './kernels/attention.ts';
import { crossEntropySpec, lossReduceSpec, seqLogProbSpec } from './kernels/loss.ts';
import { attentionMatmulSpecs } from './kernels/attention-mm.ts';

export interface StepBuffers {
  inputs: GPUBuffer;
  targets: GPUBuffer;
  mask: GPUBuffer;
  rowStart: GPUBuffer;
  positions: GPUBuffer;
  batch: GPUBuffer;
  results: GPUBuffer;
  /** Head stage only. */
  logits: GPUBuffer | undefined;
  /** [N, C] the blocks' input: the encoder's output, or the previous stage's output (written). */
  stageIn: GPUBuffer;
  /** [N, C] the last block's output (what a non-head stage sends on). */
  stageOut: GPUBuffer;
  /** [N, C] residual gradient: dOut is written here for a non-head stage; dIn after the backward. */
  dres: GPUBuffer;
  /** Preference tuning: a weight per sequence (B floats) in, sequence log-probs (B floats) out. */
  rowWeights: GPUBuffer;
  seqLogProbs: GPUBuffer;
}

/** The preference-tuning (DPO) dispatch lists of a plan, prepared on first use. */
export interface PreferenceDispatches {
  /** Forward + per-position CE + per-sequence sums into seqLogProbs. */
  sequenceLogProbs: Dispatch[];
  /** Forward + CE with dlogits weighted per sequence (rowWeights) + seqLogProbs + backward + norm. */
  forwardBackwardWeighted: Dispatch[];
  /**
   * A pipeline's head stage (DPO): right after `sequenceLogProbs` (its logits are still in place),
   * the weighted CE + the backward + norm, without a second forward.
   */
  weightedBackward: Dispatch[];
}

export interface RecordedStep {
  B: number;
  T: number;
  spec: StageSpec;
  buffers: StepBuffers;
  /** Forward (+ loss on the head stage; logits stay logits). */
  forward: Dispatch[];
  /** Forward (+ loss) + backward + gradient norm (logits become dlogits in place). */
  forwardBackward: Dispatch[];
  /** DPO lists: compiled only when first asked for, so LM training pays nothing for them. */
  preference(): Promise<PreferenceDispatches>;
  destroy(): void;
}

interface Pending {
  spec: KernelSpec;
  bufs: Array<GPUBuffer | BufferSlice>;
}

/** 'auto': batched matmuls from T >= 64 on (the row kernels loop over T serially per thread). */
export type AttentionChoice = 'auto' | 'rows' | 'matmul';

export function attentionImpl(choice: AttentionChoice, T: number): 'rows' | 'matmul' {
  return choice === 'auto' ? (T >= 64 ? 'matmul' : 'rows') : choice;
}

/** The whole model: the stage [0, L) with the embeddings and the head. */
export function recordStep(
  rt: KernelRuntime, config: ModelConfig, layout: PaddedLayout, params: GPUBuffer, grads: GPUBuffer, B: number, T: number,
  attention: AttentionChoice = 'auto',
): Promise<RecordedStep> {
  return recordStage(rt, config, { from: 0, to: config.nLayer }, layout, params, grads, B, T, attention);
}

/** `layout` is the padded layout of the stage's table (buildStageTable); params/grads hold only it. */
export async function recordStage(
  rt: KernelRuntime, config: ModelConfig, spec: StageSpec, layout: PaddedLayout, params: GPUBuffer, grads: GPUBuffer,
  B: number, T: number, attention: AttentionChoice = 'auto',
): Promise<RecordedStep> {
  const device = rt.device;
  const { vocabSize: V, nHead: NH, nEmbd: C, contextLength: maxT } = config;
  const N = B * T;
  const { from, to } = spec;
  const L = to - from; // blocks held; block `from + i` uses activations [i]
  const emb = from === 0;
  const head = to === config.nLayer;
  const owned: GPUBuffer[] = [];
  const buf = (floats: number, label: string) => {
    const b = storageBuffer(device, floats * 4, label);
    owned.push(b);
    return b;
  };
  const perLayer = (floats: number, label: string) => Array.from({ length: L }, (_, l) => buf(floats, `${label}[${l}]`));

  // Parameter / gradient tensors as bindable slices of the padded buffers.
  const slice = (base: GPUBuffer, name: string): BufferSlice => {
    const i = layout.table.tensors.findIndex((t) => t.name === name);
    if (i < 0) throw new Error(`webgpu engine: stage [${from}, ${to}) has no parameter ${name} (bug)`);
    return { buffer: base, offset: layout.offsets[i] * 4, size: layout.table.tensors[i].size * 4 };
  };
  const P = (name: string) => slice(params, name);
  const G = (name: string) => slice(grads, name);
  const bl = (i: number, s: BlockTensorSuffix) => `transformer.h.${from + i}.${s}`;
  const headBuf = (floats: number, label: string) => (head ? buf(floats, label) : undefined!);

  const a = {
    encoded: buf(N * C, emb ? 'encoded' : 'stage_input'),
    ln1: perLayer(N * C, 'ln1'), ln1Mean: perLayer(N, 'ln1_mean'), ln1Rstd: perLayer(N, 'ln1_rstd'),
    qkv: perLayer(N * 3 * C, 'qkv'), atty: perLayer(N * C, 'atty'), att: perLayer(B * NH * T * T, 'att'),
    res2: perLayer(N * C, 'res2'),
    ln2: perLayer(N * C, 'ln2'), ln2Mean: perLayer(N, 'ln2_mean'), ln2Rstd: perLayer(N, 'ln2_rstd'),
    fch: perLayer(N * 4 * C, 'fch'), fchGelu: perLayer(N * 4 * C, 'fch_gelu'), res3: perLayer(N * C, 'res3'),
    lnf: headBuf(N * C, 'lnf'), lnfMean: headBuf(N, 'lnf_mean'), lnfRstd: headBuf(N, 'lnf_rstd'),
    logits: headBuf(N * V, 'logits'), losses: headBuf(N, 'losses'),
    dres: buf(N * C, 'dres'), dbuf: buf(N * C, 'dbuf'), dqkv: buf(N * 3 * C, 'dqkv'), dfch: buf(N * 4 * C, 'dfch'),
    dpre: buf(B * NH * T * T, 'dpreatt'),
  };
  const sb: StepBuffers = {
    inputs: buf(N, 'inputs'), targets: buf(N, 'targets'), mask: buf(N, 'mask'),
    rowStart: buf(V + 1, 'emb_row_start'), positions: buf(N, 'emb_positions'),
    batch: device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'batch' }),
    results: buf(4, 'results'),
    logits: head ? a.logits : undefined,
    stageIn: a.encoded, stageOut: a.res3[L - 1], dres: a.dres,
    rowWeights: buf(B, 'row_weights'),
    seqLogProbs: buf(B, 'seq_logprobs'),
  };
  owned.push(sb.batch);

  const d = (spec: KernelSpec, bufs: Array<GPUBuffer | BufferSlice>): Pending => ({ spec, bufs });
  const mm = (s: Partial<MatmulShape> & { M: number; N: number; K: number }, bufs: Array<GPUBuffer | BufferSlice>) =>
    d(matmulSpec({ transA: false, transB: false, bias: false, accumulate: false, tile: rt.tile(s.M, s.N), ...s }), bufs);
  // Weight gradients dW = X^T dY: K = B*T is long and the output small, so on a GPU they may be
  // split over K into a scratch of partials and summed in slice order (deterministic).
  const splitFloats = splitKScratchFloats(config, B, T, (m, n, k) => rt.splitK(m, n, k), head);
  const parts = splitFloats > 0 ? buf(splitFloats, 'splitk_partials') : undefined;
  // Bias and LayerNorm parameter gradients are column sums over N rows: two passes on GPUs when N
  // is long (row blocks into a partials scratch, then the blocks), one pass otherwise.
  const twoPass = rt.twoPassColumns(N);
  const colFloats = columnScratchFloats(config, B, T, rt);
  const colParts = colFloats > 0 ? buf(colFloats, 'column_partials') : undefined;
  const RB = Math.ceil(N / COL_BLOCK);
  const biasGrad = (OC: number, dout: GPUBuffer, out: BufferSlice): Pending[] =>
    twoPass && colParts
      ? [d(colSumPartialSpec(N, OC), [dout, colParts]), d(biasBackwardSpec(RB, OC), [colParts, out])]
      : [d(biasBackwardSpec(N, OC), [dout, out])];
  const lnGrad = (dout: GPUBuffer, inp: GPUBuffer, mean: GPUBuffer, rstd: GPUBuffer, w: BufferSlice, b: BufferSlice): Pending[] =>
    twoPass && colParts
      ? [d(layernormParamPartialSpec(N, C), [dout, inp, mean, rstd, colParts]), d(layernormParamFinalSpec(RB, C), [colParts, w, b])]
      : [d(layernormParamGradSpec(N, C), [dout, inp, mean, rstd, w, b])];
  const dW = (M: number, Nn: number, K: number, x: GPUBuffer, dy: GPUBuffer, out: BufferSlice): Pending[] => {
    const S = rt.splitK(M, Nn, K);
    if (S <= 1 || !parts) return [mm({ M, N: Nn, K, transA: true }, [x, dy, out])];
    return [
      mm({ M, N: Nn, K, transA: true, splitK: S }, [x, dy, parts]),
      d(splitKReduceSpec(S, M * Nn), [parts, out]),
    ];
  };

  const useMm = attentionImpl(attention, T) === 'matmul';
  const am = useMm ? attentionMatmulSpecs(B, T, C, NH, (x, y) => rt.tile(x, y)) : undefined;

  // ---------------- forward
  const fwd: Pending[] = [];
  if (emb) fwd.push(d(encoderForwardSpec(B, T, C), [sb.inputs, P('transformer.wte.weight'), P('transformer.wpe.weight'), a.encoded]));
  for (let l = 0; l < L; l++) {
    const residual = l === 0 ? a.encoded : a.res3[l - 1];
    fwd.push(d(layernormForwardSpec(N, C, LAYER_NORM_EPS), [residual, P(bl(l, 'ln_1.weight')), P(bl(l, 'ln_1.bias')), a.ln1[l], a.ln1Mean[l], a.ln1Rstd[l]]));
    fwd.push(mm({ M: N, N: 3 * C, K: C, bias: true }, [a.ln1[l], P(bl(l, 'attn.c_attn.weight')), P(bl(l, 'attn.c_attn.bias')), a.qkv[l]]));
    if (am) {
      fwd.push(d(am.scores, [a.qkv[l], a.qkv[l], a.att[l]]), d(am.softmax, [a.att[l]]), d(am.out, [a.att[l], a.qkv[l], a.atty[l]]));
    } else {
      fwd.push(d(attentionForwardSpec(B, T, C, NH), [a.qkv[l], a.att[l], a.atty[l]]));
    }
    // Projection + bias + residual in one pass: res2 = residual + atty Wp + bp.
    fwd.push(mm({ M: N, N: C, K: C, bias: true, addend: true }, [a.atty[l], P(bl(l, 'attn.c_proj.weight')), P(bl(l, 'attn.c_proj.bias')), residual, a.res2[l]]));
    fwd.push(d(layernormForwardSpec(N, C, LAYER_NORM_EPS), [a.res2[l], P(bl(l, 'ln_2.weight')), P(bl(l, 'ln_2.bias')), a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l]]));
    // fc writes both the pre-activation (for backward) and gelu of it.
    fwd.push(mm({ M: N, N: 4 * C, K: C, bias: true, epilogue: 'gelu' }, [a.ln2[l], P(bl(l, 'mlp.c_fc.weight')), P(bl(l, 'mlp.c_fc.bias')), a.fch[l], a.fchGelu[l]]));
    fwd.push(mm({ M: N, N: C, K: 4 * C, bias: true, addend: true }, [a.fchGelu[l], P(bl(l, 'mlp.c_proj.weight')), P(bl(l, 'mlp.c_proj.bias')), a.res2[l], a.res3[l]]));
  }
  const last = a.res3[L - 1];
  if (head) {
    fwd.push(d(layernormForwardSpec(N, C, LAYER_NORM_EPS), [last, P('transformer.ln_f.weight'), P('transformer.ln_f.bias'), a.lnf, a.lnfMean, a.lnfRstd]));
    fwd.push(mm({ M: N, N: V, K: C, transB: true }, [a.lnf, P('transformer.wte.weight'), a.logits]));
  }

  const lossFwd = !head ? [] : [
    d(crossEntropySpec(N, V, false), [a.logits, sb.targets, sb.mask, sb.batch, a.losses]),
    d(lossReduceSpec(N), [a.losses, sb.batch, sb.results]),
  ];
  const lossBwd = !head ? [] : [
    d(crossEntropySpec(N, V, true), [a.logits, sb.targets, sb.mask, sb.batch, a.losses]),
    d(lossReduceSpec(N), [a.losses, sb.batch, sb.results]),
  ];

  // ---------------- backward (a.logits now holds dlogits; a non-head stage has dOut in dres)
  const bwd: Pending[] = [];
  if (head) {
    bwd.push(...dW(V, C, N, a.logits, a.lnf, G('transformer.wte.weight')));
    bwd.push(mm({ M: N, N: C, K: V }, [a.logits, P('transformer.wte.weight'), a.dbuf]));
    // First LayerNorm backward overwrites dres (no clear needed); the rest accumulate into it.
    bwd.push(d(layernormBackwardSpec(N, C, false), [a.dbuf, last, P('transformer.ln_f.weight'), a.lnfMean, a.lnfRstd, a.dres]));
    bwd.push(...lnGrad(a.dbuf, last, a.lnfMean, a.lnfRstd, G('transformer.ln_f.weight'), G('transformer.ln_f.bias')));
  }
  for (let l = L - 1; l >= 0; l--) {
    const residual = l === 0 ? a.encoded : a.res3[l - 1];
    // MLP projection: out = fch_gelu @ Wp + bp
    // dfch = (dres Wp^T) * gelu'(fch): the GELU backward rides in the matmul epilogue.
    bwd.push(mm({ M: N, N: 4 * C, K: C, transB: true, epilogue: 'geluGrad' }, [a.dres, P(bl(l, 'mlp.c_proj.weight')), a.fch[l], a.dfch]));
    bwd.push(...dW(4 * C, C, N, a.fchGelu[l], a.dres, G(bl(l, 'mlp.c_proj.weight'))));
    bwd.push(...biasGrad(C, a.dres, G(bl(l, 'mlp.c_proj.bias'))));
    // MLP fc: fch = ln2 @ Wfc + bfc
    bwd.push(mm({ M: N, N: C, K: 4 * C, transB: true }, [a.dfch, P(bl(l, 'mlp.c_fc.weight')), a.dbuf]));
    bwd.push(...dW(C, 4 * C, N, a.ln2[l], a.dfch, G(bl(l, 'mlp.c_fc.weight'))));
    bwd.push(...biasGrad(4 * C, a.dfch, G(bl(l, 'mlp.c_fc.bias'))));
    bwd.push(d(layernormBackwardSpec(N, C, true), [a.dbuf, a.res2[l], P(bl(l, 'ln_2.weight')), a.ln2Mean[l], a.ln2Rstd[l], a.dres]));
    bwd.push(...lnGrad(a.dbuf, a.res2[l], a.ln2Mean[l], a.ln2Rstd[l], G(bl(l, 'ln_2.weight')), G(bl(l, 'ln_2.bias'))));
    // Attention projection
    bwd.push(mm({ M: N, N: C, K: C, transB: true }, [a.dres, P(bl(l, 'attn.c_proj.weight')), a.dbuf]));
    bwd.push(...dW(C, C, N, a.atty[l], a.dres, G(bl(l, 'attn.c_proj.weight'))));
    bwd.push(...biasGrad(C, a.dres, G(bl(l, 'attn.c_proj.bias'))));
    if (am) {
      bwd.push(
        d(am.datt, [a.dbuf, a.qkv[l], a.dpre]), d(am.dsoftmax, [a.att[l], a.dpre]),
        d(am.dq, [a.dpre, a.qkv[l], a.dqkv]), d(am.dk, [a.dpre, a.qkv[l], a.dqkv]), d(am.dv, [a.att[l], a.dbuf, a.dqkv]),
      );
    } else {
      bwd.push(d(attentionBackwardScoresSpec(B, T, C, NH), [a.dbuf, a.qkv[l], a.att[l], a.dpre]));
      bwd.push(d(attentionBackwardQkvSpec(B, T, C, NH), [a.dbuf, a.qkv[l], a.att[l], a.dpre, a.dqkv]));
    }
    // QKV projection
    bwd.push(mm({ M: N, N: C, K: 3 * C, transB: true }, [a.dqkv, P(bl(l, 'attn.c_attn.weight')), a.dbuf]));
    bwd.push(...dW(C, 3 * C, N, a.ln1[l], a.dqkv, G(bl(l, 'attn.c_attn.weight'))));
    bwd.push(...biasGrad(3 * C, a.dqkv, G(bl(l, 'attn.c_attn.bias'))));
    bwd.push(d(layernormBackwardSpec(N, C, true), [a.dbuf, residual, P(bl(l, 'ln_1.weight')), a.ln1Mean[l], a.ln1Rstd[l], a.dres]));
    bwd.push(...lnGrad(a.dbuf, residual, a.ln1Mean[l], a.ln1Rstd[l], G(bl(l, 'ln_1.weight')), G(bl(l, 'ln_1.bias'))));
  }
  // Embeddings: with the head, dwte already holds the LM head's part and the encoder adds its own;
  // without it (first stage of several) the encoder's part is all of this stage's dwte.
  // A stage after the first stops here: dres is dIn.
  if (emb) {
    bwd.push(d(encoderBackwardWteSpec(N, V, C, head), [sb.rowStart, sb.positions, a.dres, G('transformer.wte.weight')]));
    bwd.push(d(encoderBackwardWpeSpec(B, T, C, maxT), [a.dres, G('transformer.wpe.weight')]));
  }

  // Gradient norm + non-finite count over the whole padded gradient buffer (padding is zero),
  // in binding-sized chunks.
  const total = layout.floats;
  const chunkFloats = Math.floor(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize) / 4 / NORM_CHUNK) * NORM_CHUNK;
  const groups = Math.ceil(total / NORM_CHUNK);
  const psum = buf(groups, 'norm_psum');
  const pcnt = buf(groups, 'norm_pcnt');
  for (let start = 0; start < total; start += chunkFloats) {
    const n = Math.min(chunkFloats, total - start);
    bwd.push(d(normPartialSpec(n, start / NORM_CHUNK), [{ buffer: grads, offset: start * 4, size: n * 4 }, psum, pcnt]));
  }
  bwd.push(d(normFinalSpec(groups), [psum, pcnt, sb.results]));

  // Compile all pipelines concurrently, then build each bind group once.
  const all = [...fwd, ...lossFwd, ...lossBwd, ...bwd];
  try {
    await rt.warm(all.map((p) => p.spec));
  } catch (e) {
    for (const b of owned) b.destroy();
    throw e;
  }
  const prepared = new Map<Pending, Dispatch>();
  const prep = (p: Pending) => {
    let x = prepared.get(p);
    if (!x) prepared.set(p, (x = rt.prepare(p.spec, p.bufs)));
    return x;
  };
  let preference: Promise<PreferenceDispatches> | undefined;
  return {
    B, T, spec: { from, to }, buffers: sb,
    forward: [...fwd, ...lossFwd].map(prep),
    forwardBackward: [...fwd, ...lossBwd, ...bwd].map(prep),
    preference() {
      preference ??= (async () => {
        // The sequence log-probs need the loss: only the head stage (or the whole model) has it.
        if (!head) throw new Error(`webgpu engine: the preference (DPO) lists need the head, this plan is the stage [${from}, ${to}) (bug)`);
        const seq = d(seqLogProbSpec(B, T), [a.losses, sb.seqLogProbs]);
        const ceW = d(crossEntropySpec(N, V, true, { T }), [a.logits, sb.targets, sb.mask, sb.rowWeights, a.losses]);
        await rt.warm([seq.spec, ceW.spec]);
        return {
          sequenceLogProbs: [...fwd, lossFwd[0], seq].map(prep),
          forwardBackwardWeighted: [...fwd, ceW, seq, ...bwd].map(prep),
          weightedBackward: [ceW, ...bwd].map(prep),
        };
      })();
      return preference;
    },
    destroy() {
      for (const b of owned) b.destroy();
    },
  };
}
