// Import a GPT-2 directory (ours, or any safetensors GPT-2 of a compatible shape) back into the
// flat parameter layout, to resume or fine-tune. Every table tensor must be present with its exact
// shape; fp16/bf16 become fp32. Tolerated extras: `lm_head.weight` if equal to the token embedding
// (tied), and the attention-mask buffers `*.attn.bias` / `*.attn.masked_bias` older exports carry.
// Keys without the `transformer.` prefix (GPT2Model checkpoints) are accepted.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { parseConfigJson } from './hf-files.ts';
import { readSafetensors } from './safetensors.ts';

export interface ImportedModel {
  config: ModelConfig;
  params: Float32Array;
  step: number;
  /** dtype of the stored weights (F32, F16 or BF16). */
  dtype: string;
}

function readOrThrow(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new AppError('ERR_IMPORT_FILE', `import: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 400,
      'pass a directory written by `npm run export` (model.safetensors + config.json)');
  }
}

export function importModel(dir: string): ImportedModel {
  const cfgPath = join(dir, 'config.json');
  let cfgJson: unknown;
  try {
    cfgJson = JSON.parse(new TextDecoder().decode(readOrThrow(cfgPath)));
  } catch (e) {
    if (e instanceof AppError) throw e;
    throw new AppError('ERR_IMPORT_CONFIG', `import ${cfgPath}: not valid JSON (${(e as Error).message})`);
  }
  const { config, step } = parseConfigJson(cfgJson, cfgPath);
  const stPath = join(dir, 'model.safetensors');
  return { ...importSafetensors(readOrThrow(stPath), stPath, config), step };
}

/** Map safetensors bytes onto the parameter table of `config`. */
export function importSafetensors(bytes: Uint8Array, file: string, config: ModelConfig): { config: ModelConfig; params: Float32Array; dtype: string } {
  const { tensors } = readSafetensors(bytes, file);
  const table = buildParameterTable(config);
  const params = new Float32Array(table.total);
  const byName = new Map<string, (typeof tensors extends Map<string, infer V> ? V : never)>();
  for (const [name, t] of tensors) byName.set(name.startsWith('transformer.') || name === 'lm_head.weight' ? name : `transformer.${name}`, t);
  const missing: string[] = [];
  const dtypes = new Set<string>();
  for (const t of table.tensors) {
    const s = byName.get(t.name);
    if (!s) { missing.push(t.name); continue; }
    if (s.shape.length !== t.shape.length || s.shape.some((d, i) => d !== t.shape[i])) {
      throw new AppError('ERR_IMPORT_SHAPE', `import ${file}: tensor ${t.name} has shape ${JSON.stringify(s.shape)}, config.json implies ${JSON.stringify(t.shape)}`,
        400, 'model.safetensors and config.json must come from the same export');
    }
    params.set(s.data, t.offset);
    dtypes.add(s.dtype);
  }
  if (missing.length) {
    throw new AppError('ERR_IMPORT_MISSING', `import ${file}: missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
      400, 'model.safetensors and config.json must come from the same GPT-2 export');
  }
  for (const [name, s] of byName) {
    if (table.byName.has(name)) continue;
    if (/\.attn\.(masked_)?bias$/.test(name)) continue;
    if (name === 'lm_head.weight') {
      const wte = table.byName.get('transformer.wte.weight')!;
      const same = s.data.length === wte.size && s.data.every((v, i) => v === params[wte.offset + i]);
      if (!same) throw new AppError('ERR_IMPORT_UNTIED', `import ${file}: lm_head.weight differs from transformer.wte.weight`, 400,
        'our model ties the LM head to the token embedding; untied GPT-2 weights cannot be imported');
      continue;
    }
    throw new AppError('ERR_IMPORT_UNKNOWN', `import ${file}: unexpected tensor ${name}`, 400,
      'the file does not describe a GPT-2 of this config');
  }
  return { config, params, dtype: [...dtypes].join('+') };
}

/**
 * For the coordinator's `--init-from DIR` (fine-tune or resume from an export): import `dir` and
 * require its config to equal the run's model config, naming each field that differs.
 */
export function importForTraining(dir: string, expected: ModelConfig): ImportedModel {
  const m = importModel(dir);
  const diffs = (['vocabSize', 'contextLength', 'nLayer', 'nHead', 'nEmbd'] as const)
    .filter((k) => m.config[k] !== expected[k])
    .map((k) => `${k} ${m.config[k]} (export) vs ${expected[k]} (run)`);
  if (diffs.length) {
    throw new AppError('ERR_IMPORT_CONFIG_MISMATCH', `import ${dir}: model config differs from this run's: ${diffs.join(', ')}`, 400,
      'choose the --preset the export was trained with');
  }
  return m;
}
