// The ONE parameter table (llm.c ParameterTensors): every tensor's Hugging Face GPT-2 name,
// shape and offset into one flat Float32Array. Used by the CPU reference, the WebGPU engine's
// buffers, the coordinator's optimizer, checkpoints and exports alike.
//
// Order is per layer (embeddings, then block 0's tensors, block 1's, ..., then ln_f) so that a
// contiguous layer range of the model is a contiguous slice of the flat buffer (pipeline stages).
// Linear weights use GPT-2's Conv1D layout [in, out]: y = x @ W + b.

import { parameterCount, type ModelConfig } from './config.ts';

export type ParamKind = 'embedding' | 'weight' | 'bias' | 'layernorm';

export interface ParamTensor {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  kind: ParamKind;
  /** Block index, or -1 for tensors outside the blocks (embeddings, ln_f). */
  layer: number;
  /** Residual projections (attn.c_proj, mlp.c_proj) get init std 0.02/sqrt(2L) as in GPT-2. */
  residualProjection: boolean;
}

export interface ParameterTable {
  config: ModelConfig;
  tensors: ParamTensor[];
  byName: Map<string, ParamTensor>;
  total: number;
  /** [start, end) offsets of each block's tensors in the flat buffer. */
  layerRanges: Array<[number, number]>;
}

export function buildParameterTable(config: ModelConfig): ParameterTable {
  const { vocabSize: V, contextLength: T, nLayer: L, nEmbd: C } = config;
  const tensors: ParamTensor[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], kind: ParamKind, layer: number, residualProjection = false) => {
    const size = shape.reduce((a, b) => a * b, 1);
    tensors.push({ name, shape, offset, size, kind, layer, residualProjection });
    offset += size;
  };
  add('transformer.wte.weight', [V, C], 'embedding', -1); // also the tied LM head
  add('transformer.wpe.weight', [T, C], 'embedding', -1);
  const layerRanges: Array<[number, number]> = [];
  for (let l = 0; l < L; l++) {
    const start = offset;
    const p = `transformer.h.${l}.`;
    add(p + 'ln_1.weight', [C], 'layernorm', l);
    add(p + 'ln_1.bias', [C], 'layernorm', l);
    add(p + 'attn.c_attn.weight', [C, 3 * C], 'weight', l);
    add(p + 'attn.c_attn.bias', [3 * C], 'bias', l);
    add(p + 'attn.c_proj.weight', [C, C], 'weight', l, true);
    add(p + 'attn.c_proj.bias', [C], 'bias', l);
    add(p + 'ln_2.weight', [C], 'layernorm', l);
    add(p + 'ln_2.bias', [C], 'layernorm', l);
    add(p + 'mlp.c_fc.weight', [C, 4 * C], 'weight', l);
    add(p + 'mlp.c_fc.bias', [4 * C], 'bias', l);
    add(p + 'mlp.c_proj.weight', [4 * C, C], 'weight', l, true);
    add(p + 'mlp.c_proj.bias', [C], 'bias', l);
    layerRanges.push([start, offset]);
  }
  add('transformer.ln_f.weight', [C], 'layernorm', -1);
  add('transformer.ln_f.bias', [C], 'layernorm', -1);
  if (offset !== parameterCount(config)) {
    throw new Error(`parameter table: total ${offset} != formula ${parameterCount(config)} (bug)`);
  }
  return { config, tensors, byName: new Map(tensors.map((t) => [t.name, t])), total: offset, layerRanges };
}

/** A view of one tensor inside the flat buffer (no copy). */
export function tensorView(table: ParameterTable, flat: Float32Array, name: string): Float32Array {
  const t = table.byName.get(name);
  if (!t) throw new Error(`parameter table: no tensor named "${name}"`);
  return flat.subarray(t.offset, t.offset + t.size);
}

/** Per-layer tensor names in table order, for code that walks a block. */
export function blockTensorName(layer: number, suffix: BlockTensorSuffix): string {
  return `transformer.h.${layer}.${suffix}`;
}
export type BlockTensorSuffix =
  | 'ln_1.weight' | 'ln_1.bias' | 'attn.c_attn.weight' | 'attn.c_attn.bias' | 'attn.c_proj.weight'
  | 'attn.c_proj.bias' | 'ln_2.weight' | 'ln_2.bias' | 'mlp.c_fc.weight' | 'mlp.c_fc.bias'
  | 'mlp.c_proj.weight' | 'mlp.c_proj.bias';
