// The transformer blocks on the CPU: forward and backward of a run of consecutive blocks, built
// from ops.ts (llm.c gpt2_forward / gpt2_backward, the per-layer loop). The ONE implementation of
// a block, used by every CPU stage (shared/model/cpu/stage.ts), and so by the whole model
// (CpuGpt is the stage [0, nLayer)).
//
// Forward per block l (residual stream x, [BT,C]):
//   ln1 = LN(x); qkv = ln1 @ c_attn; atty = attn(qkv); x2 = x + atty @ c_proj
//   ln2 = LN(x2); fch = ln2 @ c_fc; fchg = gelu(fch); x3 = x2 + fchg @ mlp.c_proj

import type { ModelConfig } from '../config.ts';
import {
  attentionBackward, attentionForward, geluBackward, geluForward, layernormBackward, layernormForward, matmulBackward,
  matmulForward, residualForward, type FloatArray,
} from './ops.ts';

export type FloatArrayCtor = Float32ArrayConstructor | Float64ArrayConstructor;

/** Views of one block's tensors inside a flat parameter (or gradient) vector. */
export interface BlockViews {
  ln1w: FloatArray; ln1b: FloatArray; qkvw: FloatArray; qkvb: FloatArray; projw: FloatArray; projb: FloatArray;
  ln2w: FloatArray; ln2b: FloatArray; fcw: FloatArray; fcb: FloatArray; fcprojw: FloatArray; fcprojb: FloatArray;
}

/** The block's tensors by name, from a lookup of full tensor names (parameter or stage table). */
export function blockViews(layer: number, v: (name: string) => FloatArray): BlockViews {
  const p = `transformer.h.${layer}.`;
  return {
    ln1w: v(p + 'ln_1.weight'), ln1b: v(p + 'ln_1.bias'),
    qkvw: v(p + 'attn.c_attn.weight'), qkvb: v(p + 'attn.c_attn.bias'),
    projw: v(p + 'attn.c_proj.weight'), projb: v(p + 'attn.c_proj.bias'),
    ln2w: v(p + 'ln_2.weight'), ln2b: v(p + 'ln_2.bias'),
    fcw: v(p + 'mlp.c_fc.weight'), fcb: v(p + 'mlp.c_fc.bias'),
    fcprojw: v(p + 'mlp.c_proj.weight'), fcprojb: v(p + 'mlp.c_proj.bias'),
  };
}

/** Saved activations of the blocks for fixed B and T (arrays indexed by block within the run). */
interface Acts {
  B: number;
  T: number;
  input: FloatArray | null; // the run's input x of the last forward (not owned)
  ln1: FloatArray[]; ln1Mean: FloatArray[]; ln1Rstd: FloatArray[]; // [BT,C], [BT], [BT]
  qkv: FloatArray[]; // [BT,3C]
  atty: FloatArray[]; // [BT,C]
  att: FloatArray[]; // [B,NH,T,T]
  attproj: FloatArray[]; // [BT,C]
  res2: FloatArray[]; // [BT,C]
  ln2: FloatArray[]; ln2Mean: FloatArray[]; ln2Rstd: FloatArray[];
  fch: FloatArray[]; fchGelu: FloatArray[]; // [BT,4C]
  fcproj: FloatArray[]; // [BT,C]
  res3: FloatArray[]; // [BT,C], block output
  // backward scratch, reused by every block
  dln: FloatArray; datty: FloatArray; dqkv: FloatArray; dfch: FloatArray; dfchGelu: FloatArray;
}

/**
 * `count` consecutive blocks. Activations are allocated per (B,T) and reused, so repeated calls
 * allocate nothing. Not re-entrant (synchronous anyway).
 */
export class BlockRun {
  private acts: Acts | null = null;

  constructor(readonly config: ModelConfig, readonly count: number, readonly Ctor: FloatArrayCtor) {}

  private actsFor(B: number, T: number): Acts {
    if (this.acts && this.acts.B === B && this.acts.T === T) return this.acts;
    const { nEmbd: C, nHead: NH } = this.config;
    const BT = B * T;
    const A = (n: number): FloatArray => new this.Ctor(n);
    const per = (n: number): FloatArray[] => Array.from({ length: this.count }, () => A(n));
    this.acts = {
      B, T, input: null,
      ln1: per(BT * C), ln1Mean: per(BT), ln1Rstd: per(BT), qkv: per(BT * 3 * C), atty: per(BT * C),
      att: per(B * NH * T * T), attproj: per(BT * C), res2: per(BT * C),
      ln2: per(BT * C), ln2Mean: per(BT), ln2Rstd: per(BT), fch: per(BT * 4 * C), fchGelu: per(BT * 4 * C),
      fcproj: per(BT * C), res3: per(BT * C),
      dln: A(BT * C), datty: A(BT * C), dqkv: A(BT * 3 * C), dfch: A(BT * 4 * C), dfchGelu: A(BT * 4 * C),
    };
    return this.acts;
  }

  /**
   * Forward through the blocks from `x` [BT,C] (kept by reference until backward). Returns the
   * output of the last block (a view into reused storage, valid until the next call).
   */
  forward(x: FloatArray, w: BlockViews[], B: number, T: number): FloatArray {
    const { nEmbd: C, nHead: NH } = this.config;
    const BT = B * T;
    const a = this.actsFor(B, T);
    a.input = x;
    for (let l = 0; l < this.count; l++) {
      const p = w[l];
      const xl = l === 0 ? x : a.res3[l - 1];
      layernormForward(a.ln1[l], a.ln1Mean[l], a.ln1Rstd[l], xl, p.ln1w, p.ln1b, BT, C);
      matmulForward(a.qkv[l], a.ln1[l], p.qkvw, p.qkvb, BT, C, 3 * C);
      attentionForward(a.atty[l], null, a.att[l], a.qkv[l], B, T, C, NH);
      matmulForward(a.attproj[l], a.atty[l], p.projw, p.projb, BT, C, C);
      residualForward(a.res2[l], xl, a.attproj[l], BT * C);
      layernormForward(a.ln2[l], a.ln2Mean[l], a.ln2Rstd[l], a.res2[l], p.ln2w, p.ln2b, BT, C);
      matmulForward(a.fch[l], a.ln2[l], p.fcw, p.fcb, BT, C, 4 * C);
      geluForward(a.fchGelu[l], a.fch[l], BT * 4 * C);
      matmulForward(a.fcproj[l], a.fchGelu[l], p.fcprojw, p.fcprojb, BT, 4 * C, C);
      residualForward(a.res3[l], a.res2[l], a.fcproj[l], BT * C);
    }
    return a.res3[this.count - 1];
  }

  /**
   * Backward of the last forward. `dres` [BT,C] holds d(loss)/d(output) on entry and
   * d(loss)/d(input x) on return; block gradients ACCUMULATE into `g` (the caller zeroes them).
   */
  backward(dres: FloatArray, w: BlockViews[], g: BlockViews[]): void {
    const a = this.acts;
    if (!a || !a.input) throw new Error('BlockRun.backward before forward (bug)');
    const { nEmbd: C, nHead: NH } = this.config;
    const { B, T } = a;
    const BT = B * T;
    for (let l = this.count - 1; l >= 0; l--) {
      const p = w[l];
      const q = g[l];
      const x = l === 0 ? a.input : a.res3[l - 1];
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
  }
}
