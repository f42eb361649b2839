// The full GPT-2 forward and backward on the CPU (llm.c gpt2_forward / gpt2_backward), built
// from ops.ts. Generic over Float32Array (training, verification) and Float64Array (the
// finite-difference gradient check): pass the array constructor to CpuGpt.
//
// Forward per block l (residual stream x, [BT,C]):
//   ln1 = LN(x); qkv = ln1 @ c_attn; atty = attn(qkv); x2 = x + atty @ c_proj
//   ln2 = LN(x2); fch = ln2 @ c_fc; fchg = gelu(fch); x3 = x2 + fchg @ mlp.c_proj
// then lnf = LN(x_L); logits = lnf @ wte^T; loss = masked mean CE.

import { AppError } from '../../errors.ts';
import type { MicroBatch } from '../../backend.ts';
import type { ModelConfig } from '../config.ts';
import { buildParameterTable, type ParameterTable } from '../parameters.ts';
import {
  attentionBackward, attentionForward, crossEntropyBackward, crossEntropyForward, encoderBackward, encoderForward,
  geluBackward, geluForward, layernormBackward, layernormForward, lmHeadBackward, lmHeadForward, matmulBackward,
  matmulForward, residualForward, softmaxForward, type FloatArray,
} from './ops.ts';
import { sequenceLogProbs, weightedCrossEntropyBackward } from './sequence-ops.ts';

export type FloatArrayCtor = Float32ArrayConstructor | Float64ArrayConstructor;

/** Views of one block's tensors inside a flat parameter (or gradient) vector. */
export interface BlockViews {
  ln1w: FloatArray; ln1b: FloatArray; qkvw: FloatArray; qkvb: FloatArray; projw: FloatArray; projb: FloatArray;
  ln2w: FloatArray; ln2b: FloatArray; fcw: FloatArray; fcb: FloatArray; fcprojw: FloatArray; fcprojb: FloatArray;
}

export interface ParamViews {
  wte: FloatArray;
  wpe: FloatArray;
  blocks: BlockViews[];
  lnfw: FloatArray;
  lnfb: FloatArray;
}

/** Named views (no copy) of every tensor of a flat vector laid out as the parameter table. */
export function paramViews(table: ParameterTable, flat: FloatArray): ParamViews {
  if (flat.length !== table.total) {
    throw new AppError('ERR_PARAM_SIZE', `cpu model: parameter vector has ${flat.length} values, the model needs ${table.total}`,
      400, 'the vector must be laid out as buildParameterTable(config)');
  }
  const v = (name: string): FloatArray => {
    const t = table.byName.get(name)!;
    return flat.subarray(t.offset, t.offset + t.size);
  };
  const blocks: BlockViews[] = [];
  for (let l = 0; l < table.config.nLayer; l++) {
    const p = `transformer.h.${l}.`;
    blocks.push({
      ln1w: v(p + 'ln_1.weight'), ln1b: v(p + 'ln_1.bias'),
      qkvw: v(p + 'attn.c_attn.weight'), qkvb: v(p + 'attn.c_attn.bias'),
      projw: v(p + 'attn.c_proj.weight'), projb: v(p + 'attn.c_proj.bias'),
      ln2w: v(p + 'ln_2.weight'), ln2b: v(p + 'ln_2.bias'),
      fcw: v(p + 'mlp.c_fc.weight'), fcb: v(p + 'mlp.c_fc.bias'),
      fcprojw: v(p + 'mlp.c_proj.weight'), fcprojb: v(p + 'mlp.c_proj.bias'),
    });
  }
  return {
    wte: v('transformer.wte.weight'), wpe: v('transformer.wpe.weight'), blocks,
    lnfw: v('transformer.ln_f.weight'), lnfb: v('transformer.ln_f.bias'),
  };
}

/** Checks a micro-batch against the model; throws AppError naming the bad field. Changes nothing. */
export function checkBatch(config: ModelConfig, batch: MicroBatch): void {
  const { B, T, inputs, targets, mask } = batch;
  const where = 'cpu model: micro-batch';
  if (!Number.isInteger(B) || B <= 0) throw new AppError('ERR_BATCH_SHAPE', `${where}: B must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T <= 0 || T > config.contextLength) {
    throw new AppError('ERR_BATCH_SHAPE', `${where}: T must be an integer in 1..${config.contextLength} (contextLength), got ${T}`);
  }
  const n = B * T;
  for (const [name, arr] of [['inputs', inputs], ['targets', targets], ['mask', mask]] as const) {
    if (!arr || arr.length !== n) {
      throw new AppError('ERR_BATCH_SHAPE', `${where}: ${name} has ${arr?.length} entries, expected B*T = ${n}`);
    }
  }
  const V = config.vocabSize;
  for (let i = 0; i < n; i++) {
    const x = inputs[i];
    if (!(x >= 0 && x < V)) {
      throw new AppError('ERR_TOKEN_RANGE', `${where}: inputs[${i}] = ${x} is outside the vocabulary 0..${V - 1}`,
        400, 'tokenize with the model\'s tokenizer');
    }
    if (mask[i]) {
      const y = targets[i];
      if (!(y >= 0 && y < V)) {
        throw new AppError('ERR_TOKEN_RANGE', `${where}: targets[${i}] = ${y} is outside the vocabulary 0..${V - 1} where mask is 1`,
          400, 'set mask to 0 at padding positions');
      }
    }
  }
}

/** Saved activations of one forward pass, for fixed B and T. */
interface Acts {
  B: number;
  T: number;
  encoded: FloatArray; // [BT,C]
  ln1: FloatArray[]; ln1Mean: FloatArray[]; ln1Rstd: FloatArray[]; // per layer [BT,C], [BT], [BT]
  qkv: FloatArray[]; // [BT,3C]
  atty: FloatArray[]; // [BT,C]
  att: FloatArray[]; // [B,NH,T,T]
  attproj: FloatArray[]; // [BT,C]
  res2: FloatArray[]; // [BT,C]
  ln2: FloatArray[]; ln2Mean: FloatArray[]; ln2Rstd: FloatArray[];
  fch: FloatArray[]; fchGelu: FloatArray[]; // [BT,4C]
  fcproj: FloatArray[]; // [BT,C]
  res3: FloatArray[]; // [BT,C]
  lnf: FloatArray; lnfMean: FloatArray; lnfRstd: FloatArray;
  logits: FloatArray; // [BT,V]
  probs: FloatArray; // [BT,V]
  losses: FloatArray; // [BT]
  // backward scratch, reused by every layer
  dres: FloatArray; dln: FloatArray; datty: FloatArray; dqkv: FloatArray; dfch: FloatArray; dfchGelu: FloatArray;
  dlogits: FloatArray;
}

export interface LossResult {
  loss: number;
  tokens: number;
}

/**
 * A CPU GPT-2 for one config and one float type. Activations are allocated per (B,T) and reused
 * across calls, so repeated steps allocate nothing. Not re-entrant (it is synchronous anyway).
 */
export class CpuGpt {
  readonly table: ParameterTable;
  private acts: Acts | null = null;
  private last: { params: FloatArray; batch: MicroBatch; loss: LossResult } | null = null;

  constructor(readonly config: ModelConfig, readonly Ctor: FloatArrayCtor = Float32Array) {
    this.table = buildParameterTable(config);
  }

  private actsFor(B: number, T: number): Acts {
    if (this.acts && this.acts.B === B && this.acts.T === T) return this.acts;
    const { nLayer: L, nEmbd: C, nHead: NH, vocabSize: V } = this.config;
    const BT = B * T;
    const A = (n: number): FloatArray => new this.Ctor(n);
    const per = (n: number): FloatArray[] => Array.from({ length: L }, () => A(n));
    this.acts = {
      B, T, encoded: A(BT * C),
      ln1: per(BT * C), ln1Mean: per(BT), ln1Rstd: per(BT), qkv: per(BT * 3 * C), atty: per(BT * C),
      att: per(B * NH * T * T), attproj: per(BT * C), res2: per(BT * C),
      ln2: per(BT * C), ln2Mean: per(BT), ln2Rstd: per(BT), fch: per(BT * 4 * C), fchGelu: per(BT * 4 * C),
      fcproj: per(BT * C), res3: per(BT * C),
      lnf: A(BT * C), lnfMean: A(BT), lnfRstd: A(BT), logits: A(BT * V), probs: A(BT * V), losses: A(BT),
      dres: A(BT * C), dln: A(BT * C), datty: A(BT * C), dqkv: A(BT * 3 * C), dfch: A(BT * 4 * C),
      dfchGelu: A(BT * 4 * C), dlogits: A(BT * V),
    };
    return this.acts;
  }

  /**
   * Forward pass. Returns the masked mean loss; logits ([B*T*V], valid until the next call) via
   * `logits()`. The batch is validated first (AppError on bad input).
   */
  forward(params: FloatArray, batch: MicroBatch): LossResult {
    checkBatch(this.config, batch);
    const { B, T, inputs, targets, mask } = batch;
    const { nLayer: L, nEmbd: C, nHead: NH, vocabSize: V } = this.config;
    const BT = B * T;
    const w = paramViews(this.table, params);
    const a = this.actsFor(B, T);
    encoderForward(a.encoded, inputs, w.wte, w.wpe, B, T, C);
    for (let l = 0; l < L; l++) {
      const p = w.blocks[l];
      const x = l === 0 ? a.encoded : a.res3[l - 1];
      layernormForward(a.ln1[l], a.ln1Mean[l], a.ln1Rstd[l], x, p.ln1w, p.ln1b, BT, C);
      matmulForward(a.qkv[l], a.ln1[l], p.qkvw, p.qkvb, BT, C, 3 * C);
      attentionForward(a.atty[l], null, a.att[l], a.qkv[l], B, T, C, NH);
      matmulForward(a.attproj[l], a.atty[l], p.projw, p.projb, BT, C, C);
      residualForward(a.res2[l], x, a.attproj[l], BT * C);
      layernormForward(a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l], a.res2[l], p.ln2w, p.ln2b, BT, C);
      matmulForward(a.fch[l], a.ln2[l], p.fcw, p.fcb, BT, C, 4 * C);
      geluForward(a.fchGelu[l], a.fch[l], BT * 4 * C);
      matmulForward(a.fcproj[l], a.fchGelu[l], p.fcprojw, p.fcprojb, BT, 4 * C, C);
      residualForward(a.res3[l], a.res2[l], a.fcproj[l], BT * C);
    }
    layernormForward(a.lnf, a.lnfMean, a.lnfRstd, a.res3[L - 1], w.lnfw, w.lnfb, BT, C);
    lmHeadForward(a.logits, a.lnf, w.wte, BT, C, V);
    const loss = crossEntropyForward(a.losses, a.logits, targets, mask, BT, V);
    this.last = { params, batch, loss };
    return loss;
  }

  /** Logits [B*T*V] of the last forward (a view into reused storage: copy to keep). */
  logits(): FloatArray {
    if (!this.acts) throw new AppError('ERR_NO_FORWARD', 'cpu model: logits() before any forward()', 500);
    return this.acts.logits;
  }

  /**
   * Per-sequence log-probabilities of the last forward: out[b] = sum over masked-in positions of
   * row b of log p(target). Float64 (DPO margins are differences of such sums).
   */
  sequenceLogProbs(): Float64Array {
    const last = this.last;
    if (!last || !this.acts) throw new AppError('ERR_NO_FORWARD', 'cpu model: sequenceLogProbs() needs a forward() first', 500);
    const out = new Float64Array(last.batch.B);
    sequenceLogProbs(out, this.acts.losses, last.batch.B, last.batch.T);
    return out;
  }

  /**
   * Backward of the last forward: OVERWRITES grads (flat, parameter-table layout, same float type)
   * with d(mean masked loss)/d(params). With no masked-in position the gradient is all zeros.
   */
  backward(grads: FloatArray): void {
    const last = this.last;
    if (!last || !this.acts) throw new AppError('ERR_NO_FORWARD', 'cpu model: backward() needs a forward() first', 500);
    const { batch, loss } = last;
    if (loss.tokens === 0) {
      grads.fill(0);
      return;
    }
    this.backwardFrom(grads, (dlogits, probs) => crossEntropyBackward(dlogits, probs, batch.targets, batch.mask, batch.B * batch.T, this.config.vocabSize, loss.tokens));
  }

  /**
   * Weighted backward of the last forward: OVERWRITES grads with the gradient of
   * sum_b rowWeights[b] * sum_t mask * CE(b, t) = -sum_b rowWeights[b] * log p(sequence b), the
   * generalisation of the mean loss (every weight 1/tokens) that DPO needs (shared/model/dpo.ts).
   */
  backwardWeighted(grads: FloatArray, rowWeights: ArrayLike<number>): void {
    const last = this.last;
    if (!last || !this.acts) throw new AppError('ERR_NO_FORWARD', 'cpu model: backwardWeighted() needs a forward() first', 500);
    const { batch } = last;
    if (rowWeights.length !== batch.B) {
      throw new AppError('ERR_BATCH_SHAPE', `cpu model: rowWeights has ${rowWeights.length} entries, the batch has B = ${batch.B} rows`);
    }
    for (let b = 0; b < batch.B; b++) {
      if (!Number.isFinite(rowWeights[b])) throw new AppError('ERR_BATCH_SHAPE', `cpu model: rowWeights[${b}] = ${rowWeights[b]} is not finite`);
    }
    this.backwardFrom(grads, (dlogits, probs) => weightedCrossEntropyBackward(dlogits, probs, batch.targets, batch.mask, batch.B, batch.T, this.config.vocabSize, rowWeights));
  }

  /** The backward pass below the loss: `lossGrad` accumulates d(objective)/d(logits) into zeroed dlogits. */
  private backwardFrom(grads: FloatArray, lossGrad: (dlogits: FloatArray, probs: FloatArray) => void): void {
    const { params, batch } = this.last!;
    const { B, T, inputs } = batch;
    const { nLayer: L, nEmbd: C, nHead: NH, vocabSize: V } = this.config;
    const BT = B * T;
    const a = this.acts!;
    const w = paramViews(this.table, params);
    const g = paramViews(this.table, grads);
    grads.fill(0);

    softmaxForward(a.probs, a.logits, BT, V);
    a.dlogits.fill(0);
    lossGrad(a.dlogits, a.probs);
    const dlnf = a.dln;
    dlnf.fill(0);
    lmHeadBackward(dlnf, g.wte, a.dlogits, a.lnf, w.wte, BT, C, V);
    const dres = a.dres; // gradient of the residual stream, walked down through the blocks
    dres.fill(0);
    layernormBackward(dres, g.lnfw, g.lnfb, dlnf, a.res3[L - 1], w.lnfw, a.lnfMean, a.lnfRstd, BT, C);
    for (let l = L - 1; l >= 0; l--) {
      const p = w.blocks[l];
      const q = g.blocks[l];
      const x = l === 0 ? a.encoded : a.res3[l - 1];
      // x3 = x2 + fcproj: dres is d(x3) = d(fcproj), and also flows straight into d(x2)
      a.dfchGelu.fill(0);
      matmulBackward(a.dfchGelu, q.fcprojw, q.fcprojb, dres, a.fchGelu[l], p.fcprojw, BT, 4 * C, C);
      a.dfch.fill(0);
      geluBackward(a.dfch, a.fch[l], a.dfchGelu, BT * 4 * C);
      a.dln.fill(0);
      matmulBackward(a.dln, q.fcw, q.fcb, a.dfch, a.ln2[l], p.fcw, BT, C, 4 * C);
      layernormBackward(dres, q.ln2w, q.ln2b, a.dln, a.res2[l], p.ln2w, a.ln2Mean[l], a.ln2Rstd[l], BT, C);
      // now dres = d(x2); x2 = x + attproj
      a.datty.fill(0);
      matmulBackward(a.datty, q.projw, q.projb, dres, a.atty[l], p.projw, BT, C, C);
      a.dqkv.fill(0);
      attentionBackward(a.dqkv, a.datty, a.qkv[l], a.att[l], B, T, C, NH);
      a.dln.fill(0);
      matmulBackward(a.dln, q.qkvw, q.qkvb, a.dqkv, a.ln1[l], p.qkvw, BT, C, 3 * C);
      layernormBackward(dres, q.ln1w, q.ln1b, a.dln, x, p.ln1w, a.ln1Mean[l], a.ln1Rstd[l], BT, C);
      // now dres = d(x), the input of block l
    }
    encoderBackward(g.wte, g.wpe, dres, inputs, B, T, C);
  }
}
