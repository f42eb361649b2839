// GPT-2 initialisation (HF GPT2PreTrainedModel._init_weights + the GPT-2 paper's residual
// scaling), deterministic per seed via shared/rng.ts:
//   wte, wpe, linear weights  ~ N(0, 0.02)
//   attn.c_proj / mlp.c_proj  ~ N(0, 0.02 / sqrt(2 * nLayer))   (table.residualProjection)
//   biases 0; LayerNorm weight 1, bias 0.
// Tensors are drawn in parameter-table order, so the same seed always gives the same vector.

import { Rng } from '../rng.ts';
import { validateModelConfig, type ModelConfig } from './config.ts';
import { buildParameterTable } from './parameters.ts';

export const INIT_STD = 0.02;

export function initParameters(config: ModelConfig, seed: number): Float32Array {
  validateModelConfig(config);
  const table = buildParameterTable(config);
  const params = new Float32Array(table.total);
  const rng = new Rng(seed);
  const residualStd = INIT_STD / Math.sqrt(2 * config.nLayer);
  for (const t of table.tensors) {
    const view = params.subarray(t.offset, t.offset + t.size);
    if (t.kind === 'embedding' || t.kind === 'weight') {
      const std = t.residualProjection ? residualStd : INIT_STD;
      for (let i = 0; i < view.length; i++) view[i] = rng.normal() * std;
    } else if (t.kind === 'layernorm' && t.name.endsWith('.weight')) {
      view.fill(1);
    }
    // biases (kind 'bias') and LayerNorm biases stay 0
  }
  return params;
}
