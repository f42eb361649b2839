// Pipeline stages: a stage is blocks [from, to) of the model, plus the token/position embeddings when
// it is the first (from = 0) and ln_f + the tied LM head when it is the last (to = nLayer). A stage
// worker holds, downloads and uploads only its stage's tensors, laid out as a StageTable: the full
// parameter table's tensors that the stage uses, in the same order, packed. `wte` appears in both
// the first and the last stage's table (tied LM head); the coordinator adds both gradient parts
// into the one full-size gradient with scatterAddStage (as Megatron sums tied embeddings across
// stages). The whole model is the stage [0, nLayer): its table is the full table, same layout.

import type { StageInput } from '../backend.ts';
import { AppError } from '../errors.ts';
import type { ModelConfig } from './config.ts';
import { checkStageDpo } from './dpo.ts';
import { buildParameterTable, type ParamKind } from './parameters.ts';

/** Blocks [from, to) of the model. */
export interface StageSpec {
  from: number;
  to: number;
}

/** The stage holds wte + wpe and runs the encoder (it is the first stage). */
export function stageEmbeddings(_c: ModelConfig, s: StageSpec): boolean {
  return s.from === 0;
}

/** The stage holds ln_f and the tied LM head and computes the loss (it is the last stage). */
export function stageHead(c: ModelConfig, s: StageSpec): boolean {
  return s.to === c.nLayer;
}

/** Throws AppError ERR_STAGE_SPEC unless s is a non-empty block range of the model. */
export function checkStageSpec(c: ModelConfig, s: StageSpec): void {
  const ok = s !== null && typeof s === 'object' && Number.isInteger(s.from) && Number.isInteger(s.to)
    && s.from >= 0 && s.from < s.to && s.to <= c.nLayer;
  if (!ok) {
    throw new AppError('ERR_STAGE_SPEC', `stage: blocks [${s?.from}, ${s?.to}) are not a range of the model's ${c.nLayer} blocks`,
      400, `use integers with 0 <= from < to <= ${c.nLayer}`);
  }
}

/** Throws AppError ERR_STAGE_SPEC unless the stages, in order, are contiguous and cover [0, nLayer). */
export function checkStageCover(c: ModelConfig, specs: StageSpec[]): void {
  if (!Array.isArray(specs) || specs.length === 0) {
    throw new AppError('ERR_STAGE_SPEC', 'stage cover: no stages', 400, `give stages covering blocks [0, ${c.nLayer})`);
  }
  let next = 0;
  for (let i = 0; i < specs.length; i++) {
    checkStageSpec(c, specs[i]);
    if (specs[i].from !== next) {
      throw new AppError('ERR_STAGE_SPEC', `stage cover: stage ${i} starts at block ${specs[i].from}, expected ${next}`,
        400, 'stages must be listed in order, each starting where the previous one ends');
    }
    next = specs[i].to;
  }
  if (next !== c.nLayer) {
    throw new AppError('ERR_STAGE_SPEC', `stage cover: the stages end at block ${next}, the model has ${c.nLayer}`,
      400, 'the last stage must end at nLayer (it holds the head)');
  }
}

export interface StageTensor {
  name: string;
  shape: number[];
  size: number;
  /** Offset in the stage vector. */
  offset: number;
  /** Offset in the full parameter vector. */
  fullOffset: number;
  kind: ParamKind;
  /** Block index, or -1 for embeddings and ln_f. */
  layer: number;
}

export interface StageTable {
  config: ModelConfig;
  spec: StageSpec;
  embeddings: boolean;
  head: boolean;
  tensors: StageTensor[];
  byName: Map<string, StageTensor>;
  total: number;
}

/** The stage's tensors in full-table order (wte once even when the stage is both first and last). */
export function buildStageTable(c: ModelConfig, s: StageSpec): StageTable {
  checkStageSpec(c, s);
  const full = buildParameterTable(c);
  const embeddings = stageEmbeddings(c, s);
  const head = stageHead(c, s);
  const tensors: StageTensor[] = [];
  let offset = 0;
  for (const t of full.tensors) {
    const keep = t.layer >= 0
      ? t.layer >= s.from && t.layer < s.to
      : t.name === 'transformer.wte.weight' ? embeddings || head
        : t.name === 'transformer.wpe.weight' ? embeddings
          : head; // ln_f
    if (!keep) continue;
    tensors.push({ name: t.name, shape: t.shape, size: t.size, offset, fullOffset: t.offset, kind: t.kind, layer: t.layer });
    offset += t.size;
  }
  return { config: c, spec: { from: s.from, to: s.to }, embeddings, head, tensors, byName: new Map(tensors.map((t) => [t.name, t])), total: offset };
}

function checkFull(st: StageTable, full: ArrayLike<number>, where: string): void {
  const n = buildParameterTable(st.config).total;
  if (full.length !== n) {
    throw new AppError('ERR_PARAM_SIZE', `${where}: the full vector has ${full.length} values, the model needs ${n}`,
      400, 'pass a vector laid out as buildParameterTable(config)');
  }
}

/** A copy of the stage's parameters (stage-table layout) out of a full parameter vector. */
export function gatherStage(st: StageTable, full: Float32Array): Float32Array;
export function gatherStage(st: StageTable, full: Float64Array): Float64Array;
export function gatherStage(st: StageTable, full: Float32Array | Float64Array): Float32Array | Float64Array {
  checkFull(st, full, 'gatherStage');
  const out = full instanceof Float64Array ? new Float64Array(st.total) : new Float32Array(st.total);
  for (const t of st.tensors) out.set(full.subarray(t.fullOffset, t.fullOffset + t.size), t.offset);
  return out;
}

/** full += scale * stage, tensor by tensor (wte of the first and of the last stage both add in). */
export function scatterAddStage(st: StageTable, stage: Float32Array | Float64Array, full: Float32Array | Float64Array, scale = 1): void {
  checkFull(st, full, 'scatterAddStage');
  if (stage.length !== st.total) {
    throw new AppError('ERR_PARAM_SIZE', `scatterAddStage: the stage vector has ${stage.length} values, stage [${st.spec.from}, ${st.spec.to}) needs ${st.total}`,
      400, 'pass a vector laid out as buildStageTable(config, spec)');
  }
  if (!Number.isFinite(scale)) throw new AppError('ERR_STAGE_SCALE', `scatterAddStage: scale ${scale} is not finite`);
  for (const t of st.tensors) {
    const o = t.offset - t.fullOffset;
    for (let i = t.fullOffset, end = t.fullOffset + t.size; i < end; i++) full[i] += scale * stage[i + o];
  }
}

/** A StageInput whose acts may also be float64 (a CPU Float64Array stage chain, for gradient checks). */
export type AnyStageInput = Omit<StageInput, 'acts'> & { acts?: Float32Array | Float64Array };

/**
 * Checks a stage's micro-batch input; throws AppError naming the bad field, changes nothing.
 * The first stage needs `inputs` (token ids), every other stage `acts` [B*T*C]; the head stage
 * also needs `targets` and `mask`, and checks `dpo` when given (ERR_DPO_BATCH). Fields a stage does not use are ignored. `acts` must be a
 * Float32Array (the wire type); `float64` also admits a Float64Array (CPU float64 stage chains).
 */
export function checkStageInput(st: StageTable, input: AnyStageInput, float64 = false): void {
  const c = st.config;
  const where = `stage [${st.spec.from}, ${st.spec.to}): input`;
  const { B, T } = input ?? ({} as StageInput);
  if (!Number.isInteger(B) || B <= 0) throw new AppError('ERR_BATCH_SHAPE', `${where}: B must be a positive integer, got ${B}`);
  if (!Number.isInteger(T) || T <= 0 || T > c.contextLength) {
    throw new AppError('ERR_BATCH_SHAPE', `${where}: T must be an integer in 1..${c.contextLength} (contextLength), got ${T}`);
  }
  const n = B * T;
  const V = c.vocabSize;
  const need = (name: string, arr: ArrayLike<number> | undefined, len: number, why: string): void => {
    if (!arr) throw new AppError('ERR_STAGE_INPUT', `${where}: ${name} is missing`, 400, why);
    if (arr.length !== len) throw new AppError('ERR_BATCH_SHAPE', `${where}: ${name} has ${arr.length} entries, expected ${len}`);
  };
  if (st.embeddings) {
    need('inputs', input.inputs, n, 'the first stage embeds token ids');
    for (let i = 0; i < n; i++) {
      const x = input.inputs![i];
      if (!(x >= 0 && x < V)) {
        throw new AppError('ERR_TOKEN_RANGE', `${where}: inputs[${i}] = ${x} is outside the vocabulary 0..${V - 1}`, 400, 'tokenize with the model\'s tokenizer');
      }
    }
  } else {
    need('acts', input.acts, n * c.nEmbd, 'a stage after the first reads the previous stage\'s output [B*T*C]');
    if (!(input.acts instanceof Float32Array || (float64 && input.acts instanceof Float64Array))) {
      throw new AppError('ERR_STAGE_INPUT', `${where}: acts must be a Float32Array`);
    }
  }
  if (st.head) {
    need('targets', input.targets, n, 'the head stage computes the loss');
    need('mask', input.mask, n, 'the head stage computes the loss');
    for (let i = 0; i < n; i++) {
      const y = input.targets![i];
      if (input.mask![i] && !(y >= 0 && y < V)) {
        throw new AppError('ERR_TOKEN_RANGE', `${where}: targets[${i}] = ${y} is outside the vocabulary 0..${V - 1} where mask is 1`, 400, 'set mask to 0 at padding positions');
      }
    }
    if (input.dpo !== undefined) checkStageDpo(input.dpo, B, where);
  }
}

/** Checks the gradient w.r.t. a non-head stage's output; throws AppError ERR_STAGE_INPUT. */
export function checkStageDOut(st: StageTable, input: AnyStageInput, dOut: Float32Array | Float64Array | undefined, float64 = false): void {
  if (st.head) return;
  const where = `stage [${st.spec.from}, ${st.spec.to}): backward`;
  const n = input.B * input.T * st.config.nEmbd;
  if (dOut === undefined || dOut === null) {
    throw new AppError('ERR_STAGE_INPUT', `${where}: dOut is missing`, 400, 'a stage before the head needs the next stage\'s dIn [B*T*C] as dOut');
  }
  if (!(dOut instanceof Float32Array || (float64 && dOut instanceof Float64Array))) {
    throw new AppError('ERR_STAGE_INPUT', `${where}: dOut must be a Float32Array`);
  }
  if (dOut.length !== n) throw new AppError('ERR_BATCH_SHAPE', `${where}: dOut has ${dOut.length} entries, expected B*T*C = ${n}`);
}
