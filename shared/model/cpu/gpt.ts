// The full GPT-2 forward and backward on the CPU (llm.c gpt2_forward / gpt2_backward): the
// pipeline stage [0, nLayer) with the embeddings and the head (stage.ts), whose blocks are the one
// block implementation (blocks.ts). Generic over Float32Array (training, verification) and
// Float64Array (the finite-difference gradient check): pass the array constructor to CpuGpt.
// Logits = LN_f(blocks(wte[x] + wpe)) @ wte^T; loss = masked mean CE.

import { AppError } from '../../errors.ts';
import type { MicroBatch } from '../../backend.ts';
import type { ModelConfig } from '../config.ts';
import { buildParameterTable, type ParameterTable } from '../parameters.ts';
import { blockViews, type BlockViews, type FloatArrayCtor } from './blocks.ts';
import type { FloatArray } from './ops.ts';
import { CpuStage, type LossResult } from './stage.ts';
import { sequenceLogProbs } from './sequence-ops.ts';

export type { BlockViews, FloatArrayCtor } from './blocks.ts';
export type { LossResult } from './stage.ts';

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
  for (let l = 0; l < table.config.nLayer; l++) blocks.push(blockViews(l, v));
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

/**
 * A CPU GPT-2 for one config and one float type: the stage [0, nLayer) behind the micro-batch API.
 * Activations are allocated per (B,T) and reused across calls, so repeated steps allocate
 * nothing. Not re-entrant (it is synchronous anyway).
 */
export class CpuGpt {
  readonly table: ParameterTable;
  private readonly stage: CpuStage;
  /** T of the last forward (the stage's per-position losses are [B*T]). */
  private lastT = 1;

  constructor(readonly config: ModelConfig, readonly Ctor: FloatArrayCtor = Float32Array) {
    this.table = buildParameterTable(config);
    this.stage = new CpuStage(config, { from: 0, to: config.nLayer }, Ctor);
    if (this.stage.table.total !== this.table.total) throw new Error('cpu model: stage [0, L) is not the full table (bug)');
  }

  /**
   * Forward pass. Returns the masked mean loss; logits ([B*T*V], valid until the next call) via
   * `logits()`. The batch is validated first (AppError on bad input).
   */
  forward(params: FloatArray, batch: MicroBatch): LossResult {
    checkBatch(this.config, batch);
    if (params.length !== this.table.total) {
      throw new AppError('ERR_PARAM_SIZE', `cpu model: parameter vector has ${params.length} values, the model needs ${this.table.total}`,
        400, 'the vector must be laid out as buildParameterTable(config)');
    }
    this.lastT = batch.T;
    return this.stage.run(params, batch).loss!;
  }

  /** Logits [B*T*V] of the last forward (a view into reused storage: copy to keep). */
  logits(): FloatArray {
    try {
      return this.stage.logits();
    } catch {
      throw new AppError('ERR_NO_FORWARD', 'cpu model: logits() before any forward()', 500);
    }
  }

  /**
   * Backward of the last forward: OVERWRITES grads (flat, parameter-table layout, same float type)
   * with d(mean masked loss)/d(params). With no masked-in position the gradient is all zeros.
   */
  backward(grads: FloatArray): void {
    this.stage.backward(grads);
  }

  /**
   * Per-sequence log-probabilities of the last forward: out[b] = sum over masked-in positions of
   * row b of log p(target). Float64 (DPO margins are differences of such sums).
   */
  sequenceLogProbs(): Float64Array {
    let losses: FloatArray;
    try {
      losses = this.stage.losses();
    } catch {
      throw new AppError('ERR_NO_FORWARD', 'cpu model: sequenceLogProbs() needs a forward() first', 500);
    }
    const B = losses.length / this.lastT;
    const out = new Float64Array(B);
    sequenceLogProbs(out, losses, B, this.lastT);
    return out;
  }

  /**
   * Weighted backward of the last forward: OVERWRITES grads with the gradient of
   * sum_b rowWeights[b] * sum_t mask * CE(b, t) = -sum_b rowWeights[b] * log p(sequence b), the
   * generalisation of the mean loss (every weight 1/tokens) that DPO needs (shared/model/dpo.ts).
   */
  backwardWeighted(grads: FloatArray, rowWeights: ArrayLike<number>): void {
    const B = this.stage.losses().length / this.lastT;
    if (rowWeights.length !== B) {
      throw new AppError('ERR_BATCH_SHAPE', `cpu model: rowWeights has ${rowWeights.length} entries, the batch has B = ${B} rows`);
    }
    for (let b = 0; b < B; b++) {
      if (!Number.isFinite(rowWeights[b])) throw new AppError('ERR_BATCH_SHAPE', `cpu model: rowWeights[${b}] = ${rowWeights[b]} is not finite`);
    }
    this.stage.backward(grads, undefined, rowWeights);
  }
}
