// The model as the planner sees it: a total parameter count and an ordered list of units that
// pipeline stages take in contiguous runs. From a config: unit 0 is the embeddings (wte + wpe),
// then one unit per block, then the head (ln_f + the LM head, tied to wte: the last stage holds
// its own copy of wte, so the units sum to params + V x C; see stage-memory.ts). From a bare
// parameter count, the layers are inferred (see inferLayers) and split evenly.

import { AppError } from '../errors.ts';
import { presetConfig, validateModelConfig, PRESET_NAMES, type ModelConfig } from '../model/config.ts';
import { blockParams, embeddingParams, finalNormParams, modelParams } from './rules.ts';

export interface ModelUnit {
  name: string;
  params: number;
  /** Block index, or -1 for the embeddings unit and nLayer for the head unit. */
  layer: number;
}

export interface ModelShape {
  /** Preset name, "config" or "<N> params". */
  name: string;
  params: number;
  config?: ModelConfig;
  units: ModelUnit[];
  /** Number of transformer blocks (given or inferred). */
  nLayer: number;
  /** Says how the layers were obtained when they were inferred. */
  note?: string;
}

export function shapeFromConfig(config: ModelConfig, name = 'config'): ModelShape {
  try {
    validateModelConfig(config);
  } catch (e) {
    throw new AppError('ERR_MEMORY_MODEL', (e as Error).message, 400, 'a config needs positive integers vocabSize, contextLength, nLayer, nHead, nEmbd');
  }
  const units: ModelUnit[] = [{ name: 'embeddings (wte, wpe)', params: embeddingParams(config), layer: -1 }];
  for (let l = 0; l < config.nLayer; l++) units.push({ name: `block ${l}`, params: blockParams(config), layer: l });
  units.push({ name: 'head (ln_f + tied wte copy)', params: config.vocabSize * config.nEmbd + finalNormParams(config), layer: config.nLayer });
  return { name, params: modelParams(config), config, units, nLayer: config.nLayer };
}

export function shapeFromPreset(name: string): ModelShape {
  if (!(PRESET_NAMES as string[]).includes(name)) {
    throw new AppError('ERR_MEMORY_MODEL', `unknown model preset "${name}"`, 400, `use one of ${PRESET_NAMES.join(', ')}, or --params N / --config FILE`);
  }
  return shapeFromConfig(presetConfig(name), name);
}

/** GPT-style models keep width near 128 x depth (GPT-3 2.7B: 2560/32 = 80; 6.7B: 4096/32 = 128; 13B: 5140/40). */
export function inferLayers(params: number): number {
  const width = Math.cbrt((params * 128) / 12);
  return Math.max(1, Math.round(width / 128));
}

export function shapeFromParams(params: number, layers?: number): ModelShape {
  if (!Number.isFinite(params) || params < 1 || !Number.isSafeInteger(Math.round(params))) {
    throw new AppError('ERR_MEMORY_MODEL', `parameter count must be a positive number, got ${String(params)}`, 400, 'e.g. --params 7e9');
  }
  const P = Math.round(params);
  const L = layers ?? inferLayers(P);
  if (!Number.isInteger(L) || L < 1 || L > P) {
    throw new AppError('ERR_MEMORY_MODEL', `layers must be an integer in 1..${P}, got ${String(layers)}`, 400);
  }
  const each = Math.floor(P / L);
  const units: ModelUnit[] = [];
  for (let l = 0; l < L; l++) units.push({ name: `layer ${l}`, params: each + (l < P - each * L ? 1 : 0), layer: l });
  return {
    name: `${P} params`, params: P, units, nLayer: L,
    note: layers === undefined
      ? `layers inferred: ${L} equal slices of ~${each.toLocaleString('en-US')} params (width ~128 x depth); pass layers to override`
      : `${L} equal slices of ~${each.toLocaleString('en-US')} params`,
  };
}
