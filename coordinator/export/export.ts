// Export a model as a Hugging Face GPT-2 directory: model.safetensors (names and Conv1D layouts
// straight from the parameter table; the tied LM head is not stored, as save_pretrained does),
// config.json, tokenizer.json, tokenizer_config.json, generation_config.json.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { configJson, EXPORT_FORMAT, EXPORT_VERSION, generationConfigJson, tokenizerConfigJson, tokenizerJson } from './hf-files.ts';
import { writeSafetensors } from './safetensors.ts';

export type ExportDtype = 'f32' | 'f16';
export const EXPORT_FILES = ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'] as const;
export type ExportFileName = (typeof EXPORT_FILES)[number];

export interface ExportableModel {
  config: ModelConfig;
  params: Float32Array;
  step?: number;
}

export function parseDtype(s: string | undefined): ExportDtype {
  if (s === undefined || s === 'f32' || s === 'fp32' || s === 'float32') return 'f32';
  if (s === 'f16' || s === 'fp16' || s === 'float16') return 'f16';
  throw new AppError('ERR_EXPORT_DTYPE', `export: unknown dtype "${s}"`, 400, 'allowed: f32, f16');
}

/** model.safetensors bytes of a model. */
export function safetensorsBytes(model: ExportableModel, dtype: ExportDtype): Uint8Array {
  const table = buildParameterTable(model.config);
  if (model.params.length !== table.total) {
    throw new AppError('ERR_EXPORT_PARAMS', `export: params has ${model.params.length} values, config needs ${table.total}`, 500);
  }
  return writeSafetensors(
    table.tensors.map((t) => ({ name: t.name, shape: t.shape, data: model.params.subarray(t.offset, t.offset + t.size) })),
    dtype === 'f32' ? 'F32' : 'F16',
    { format: 'pt', producer: EXPORT_FORMAT, export_version: String(EXPORT_VERSION), step: String(model.step ?? 0), tokenizer: 'byte-level-257' },
  );
}

/** One file of the export, by name (for HTTP: the name comes from a fixed list, never a path). */
export function exportFile(name: ExportFileName, model: ExportableModel, dtype: ExportDtype): Uint8Array {
  const json = (o: unknown) => new TextEncoder().encode(JSON.stringify(o, null, 2) + '\n');
  const T = model.config.contextLength;
  switch (name) {
    case 'model.safetensors': return safetensorsBytes(model, dtype);
    case 'config.json': return json(configJson(model.config, dtype === 'f32' ? 'float32' : 'float16', model.step ?? 0));
    case 'tokenizer.json': return json(tokenizerJson());
    case 'tokenizer_config.json': return json(tokenizerConfigJson(T));
    case 'generation_config.json': return json(generationConfigJson(T));
  }
}

/** Write the whole export into `dir` (created if missing). Returns the written paths. */
export function exportModel(dir: string, model: ExportableModel, opts: { dtype?: ExportDtype } = {}): string[] {
  const dtype = opts.dtype ?? 'f32';
  const files = EXPORT_FILES.map((name) => [name, exportFile(name, model, dtype)] as const); // all built before any write
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new AppError('ERR_EXPORT_DIR', `export: cannot create ${dir} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 500,
      'choose a writable --out directory');
  }
  return files.map(([name, bytes]) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  });
}
