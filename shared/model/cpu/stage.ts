// A pipeline stage on the CPU: the encoder when first, blocks [from, to) (blocks.ts), ln_f + the
// tied LM head + the masked mean cross-entropy when last. Generic over Float32Array (workers, the
// coordinator's re-computation) and Float64Array (gradient checks). The whole model is the stage
// [0, nLayer); CpuGpt (gpt.ts) is exactly that, so there is one implementation of each part.
//
// Backward of a non-head stage starts from dOut = d(loss)/d(stage output) (the next stage's dIn);
// a non-first stage's backward ends with dIn = d(loss)/d(stage input) instead of the encoder's.

import { AppError } from '../../errors.ts';
import type { ModelConfig } from '../config.ts';
import {
  buildStageTable, checkStageDOut, checkStageInput, type AnyStageInput as StageInput, type StageSpec, type StageTable,
} from '../stage.ts';
import { BlockRun, blockViews, type BlockViews, type FloatArrayCtor } from './blocks.ts';
import {
  crossEntropyBackward, crossEntropyForward, encoderBackward, encoderForward, layernormBackward, layernormForward,
  lmHeadBackward, lmHeadForward, softmaxForward, type FloatArray,
} from './ops.ts';
import { weightedCrossEntropyBackward } from './sequence-ops.ts';

export interface StageViews {
  wte: FloatArray | null; // first or last stage
  wpe: FloatArray | null; // first stage
  blocks: BlockViews[]; // blocks[i] is block from + i
  lnfw: FloatArray | null; // last stage
  lnfb: FloatArray | null;
}

/** Named views (no copy) of every tensor of a flat vector laid out as the stage table. */
export function stageViews(st: StageTable, flat: FloatArray): StageViews {
  if (flat.length !== st.total) {
    throw new AppError('ERR_PARAM_SIZE', `cpu stage [${st.spec.from}, ${st.spec.to}): vector has ${flat.length} values, the stage needs ${st.total}`,
      400, 'the vector must be laid out as buildStageTable(config, spec)');
  }
  const v = (name: string): FloatArray => {
    const t = st.byName.get(name);
    if (!t) throw new Error(`stage table has no tensor ${name} (bug)`);
    return flat.subarray(t.offset, t.offset + t.size);
  };
  const opt = (name: string): FloatArray | null => (st.byName.has(name) ? v(name) : null);
  const blocks: BlockViews[] = [];
  for (let l = st.spec.from; l < st.spec.to; l++) blocks.push(blockViews(l, v));
  return {
    wte: opt('transformer.wte.weight'), wpe: opt('transformer.wpe.weight'), blocks,
    lnfw: opt('transformer.ln_f.weight'), lnfb: opt('transformer.ln_f.bias'),
  };
}

/** Head-side activations and the stage's own scratch, per (B,T). */
interface Io {
  B: number;
  T: number;
  x: FloatArray; // [BT,C] the blocks' input: encoder output, or a copy of the received acts
  dres: FloatArray; // [BT,C] residual-stream gradient walked down the blocks; ends as dIn
  lnf: FloatArray | null; lnfMean: FloatArray | null; lnfRstd: FloatArray | null; dlnf: FloatArray | null;
  logits: FloatArray | null; probs: FloatArray | null; losses: FloatArray | null; dlogits: FloatArray | null;
}

export interface LossResult {
  loss: number;
  tokens: number;
}

export interface StageForward {
  /** Non-head: the stage's output [BT,C] (a view into reused storage). */
  out: FloatArray | null;
  /** Head: the micro-batch's masked mean loss. */
  loss: LossResult | null;
}

/** One stage of one config in one float type. Activations reused across calls; not re-entrant. */
export class CpuStage {
  readonly table: StageTable;
  private readonly blocks: BlockRun;
  private io: Io | null = null;
  private last: { params: FloatArray; input: StageInput; fwd: StageForward; y: FloatArray } | null = null;

  constructor(readonly config: ModelConfig, readonly spec: StageSpec, readonly Ctor: FloatArrayCtor = Float32Array) {
    this.table = buildStageTable(config, spec);
    this.blocks = new BlockRun(config, spec.to - spec.from, Ctor);
  }

  private ioFor(B: number, T: number): Io {
    if (this.io && this.io.B === B && this.io.T === T) return this.io;
    const { nEmbd: C, vocabSize: V } = this.config;
    const BT = B * T;
    const A = (n: number): FloatArray => new this.Ctor(n);
    const h = this.table.head;
    this.io = {
      B, T, x: A(BT * C), dres: A(BT * C),
      lnf: h ? A(BT * C) : null, lnfMean: h ? A(BT) : null, lnfRstd: h ? A(BT) : null, dlnf: h ? A(BT * C) : null,
      logits: h ? A(BT * V) : null, probs: h ? A(BT * V) : null, losses: h ? A(BT) : null, dlogits: h ? A(BT * V) : null,
    };
    return this.io;
  }

  /** Validates the input (AppError naming the field, nothing changed), then runs the forward. */
  forward(params: FloatArray, input: StageInput): StageForward {
    checkStageInput(this.table, input, this.Ctor === Float64Array);
    return this.run(params, input);
  }

  /** The forward of an input the caller has already validated (checkStageInput or checkBatch). */
  run(params: FloatArray, input: StageInput): StageForward {
    const { B, T } = input;
    const { nEmbd: C, vocabSize: V } = this.config;
    const BT = B * T;
    const w = stageViews(this.table, params);
    const io = this.ioFor(B, T);
    if (this.table.embeddings) encoderForward(io.x, input.inputs!, w.wte!, w.wpe!, B, T, C);
    else io.x.set(input.acts!);
    const y = this.blocks.forward(io.x, w.blocks, B, T);
    let fwd: StageForward;
    if (this.table.head) {
      layernormForward(io.lnf!, io.lnfMean!, io.lnfRstd!, y, w.lnfw!, w.lnfb!, BT, C);
      lmHeadForward(io.logits!, io.lnf!, w.wte!, BT, C, V);
      fwd = { out: null, loss: crossEntropyForward(io.losses!, io.logits!, input.targets!, input.mask!, BT, V) };
    } else {
      fwd = { out: y, loss: null };
    }
    this.last = { params, input, fwd, y };
    return fwd;
  }

  /** Logits [B*T*V] of the last forward of a head stage (a view into reused storage). */
  logits(): FloatArray {
    if (!this.io?.logits) throw new AppError('ERR_NO_FORWARD', 'cpu stage: logits() needs a forward() of a head stage first', 500);
    return this.io.logits;
  }

  /** Per-position losses [B*T] of the last forward of a head stage (0 where mask is 0; a view). */
  losses(): FloatArray {
    if (!this.last || !this.io?.losses) throw new AppError('ERR_NO_FORWARD', 'cpu stage: losses() needs a forward() of a head stage first', 500);
    return this.io.losses;
  }

  /**
   * Backward of the last forward: OVERWRITES grads (stage-table layout, same float type) with
   * d(mean masked loss)/d(stage params). A non-head stage needs dOut [BT,C]. Returns dIn [BT,C]
   * (a view into reused storage) unless the stage is the first. No masked-in position: all zeros.
   * With `rowWeights` (head stage, DPO: sequence-ops.ts), the objective is instead
   * sum_b rowWeights[b] * sum_t mask * CE(b, t): each row's positions weigh its weight, not 1/tokens.
   */
  backward(grads: FloatArray, dOut?: FloatArray, rowWeights?: ArrayLike<number>): FloatArray | null {
    const last = this.last;
    if (!last || !this.io) throw new AppError('ERR_NO_FORWARD', 'cpu stage: backward() needs a forward() first', 500);
    const { params, input, fwd, y } = last;
    if (!this.table.head) checkStageDOut(this.table, input, dOut, this.Ctor === Float64Array);
    const { B, T } = input;
    const { nEmbd: C, vocabSize: V } = this.config;
    const BT = B * T;
    const io = this.io;
    const w = stageViews(this.table, params);
    const g = stageViews(this.table, grads);
    grads.fill(0);
    const dres = io.dres;
    dres.fill(0);
    if (this.table.head) {
      const tokens = fwd.loss!.tokens;
      if (tokens === 0) return this.table.embeddings ? null : dres;
      softmaxForward(io.probs!, io.logits!, BT, V);
      io.dlogits!.fill(0);
      if (rowWeights) weightedCrossEntropyBackward(io.dlogits!, io.probs!, input.targets!, input.mask!, B, T, V, rowWeights);
      else crossEntropyBackward(io.dlogits!, io.probs!, input.targets!, input.mask!, BT, V, tokens);
      io.dlnf!.fill(0);
      lmHeadBackward(io.dlnf!, g.wte!, io.dlogits!, io.lnf!, w.wte!, BT, C, V);
      layernormBackward(dres, g.lnfw!, g.lnfb!, io.dlnf!, y, w.lnfw!, io.lnfMean!, io.lnfRstd!, BT, C);
    } else {
      dres.set(dOut!);
    }
    this.blocks.backward(dres, w.blocks, g.blocks);
    if (this.table.embeddings) {
      encoderBackward(g.wte!, g.wpe!, dres, input.inputs!, B, T, C);
      return null;
    }
    return dres;
  }
}
