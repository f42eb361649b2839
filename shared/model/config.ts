// Model configuration and presets. GPT-2 architecture exactly (see docs/model.md):
// learned token + position embeddings, pre-LayerNorm blocks, fused QKV, causal MHA,
// 4x MLP with tanh-GELU, final LayerNorm, LM head tied to the token embedding.

export interface ModelConfig {
  /** V: vocabulary size (byte-level tokenizer: 257 = 256 bytes + <|endoftext|>). */
  vocabSize: number;
  /** T: maximum sequence length (n_positions). */
  contextLength: number;
  /** L: number of transformer blocks. */
  nLayer: number;
  /** NH: attention heads; nEmbd must be divisible by it. */
  nHead: number;
  /** C: embedding width. */
  nEmbd: number;
}

export const LAYER_NORM_EPS = 1e-5;

export const PRESETS = {
  /** ~100k params: for tests on SwiftShader. */
  tiny: { vocabSize: 257, contextLength: 64, nLayer: 3, nHead: 4, nEmbd: 48 },
  /** ~1M params: the default `npm start` trains. */
  small: { vocabSize: 257, contextLength: 128, nLayer: 5, nHead: 4, nEmbd: 128 },
  // GPT-2 family, for planning and simulation (vocabulary of the GPT-2 BPE tokenizer).
  gpt2: { vocabSize: 50257, contextLength: 1024, nLayer: 12, nHead: 12, nEmbd: 768 },
  'gpt2-medium': { vocabSize: 50257, contextLength: 1024, nLayer: 24, nHead: 16, nEmbd: 1024 },
  'gpt2-large': { vocabSize: 50257, contextLength: 1024, nLayer: 36, nHead: 20, nEmbd: 1280 },
  'gpt2-xl': { vocabSize: 50257, contextLength: 1024, nLayer: 48, nHead: 25, nEmbd: 1600 },
} as const satisfies Record<string, ModelConfig>;

export type PresetName = keyof typeof PRESETS;
export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

export class ModelConfigError extends Error {
  readonly code = 'ERR_MODEL_CONFIG';
}

/** Throws ModelConfigError naming the field when a config cannot describe a GPT-2 model. */
export function validateModelConfig(c: ModelConfig): ModelConfig {
  for (const k of ['vocabSize', 'contextLength', 'nLayer', 'nHead', 'nEmbd'] as const) {
    const v = c[k];
    if (!Number.isInteger(v) || v <= 0) {
      throw new ModelConfigError(`model config: ${k} must be a positive integer, got ${String(v)}`);
    }
  }
  if (c.nEmbd % c.nHead !== 0) {
    throw new ModelConfigError(`model config: nEmbd (${c.nEmbd}) must be divisible by nHead (${c.nHead})`);
  }
  return c;
}

export function presetConfig(name: string): ModelConfig {
  if (!(name in PRESETS)) {
    throw new ModelConfigError(`unknown model preset "${name}"; allowed: ${PRESET_NAMES.join(', ')}`);
  }
  return { ...PRESETS[name as PresetName] };
}

/** V*C + T*C + L*(12*C^2 + 13*C) + 2*C (tied LM head). */
export function parameterCount(c: ModelConfig): number {
  const { vocabSize: V, contextLength: T, nLayer: L, nEmbd: C } = c;
  return V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C;
}
