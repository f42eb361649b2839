import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportModel, safetensorsBytes, EXPORT_FILES } from '../../coordinator/export/export.ts';
import { f16BitsToF32, f32ToF16Bits } from '../../coordinator/export/fp16.ts';
import { bytesToUnicode } from '../../coordinator/export/hf-files.ts';
import { importForTraining, importModel, importSafetensors } from '../../coordinator/export/import.ts';
import { readSafetensors, writeSafetensors } from '../../coordinator/export/safetensors.ts';
import { PRESETS, type ModelConfig } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { EOS_ID } from '../../shared/tokenizer.ts';

const config: ModelConfig = { ...PRESETS.tiny, contextLength: 16, nLayer: 2 };
const params = initParameters(config, 1);
const tmp = () => mkdtempSync(join(tmpdir(), 'export-test-'));

describe('fp16 conversion', () => {
  it('matches IEEE binary16 on known values, with round-to-nearest-even', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00],
      [2 ** -24, 0x0001], [2 ** -14, 0x0400], [2 ** -25, 0x0000], [3 * 2 ** -25, 0x0002],
      [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0.1, 0x2e66], [Infinity, 0x7c00],
    ];
    for (const [x, h] of cases) expect(f32ToF16Bits(x), String(x)).toBe(h);
    for (let h = 0; h < 0x7c00; h += 37) expect(f32ToF16Bits(f16BitsToF32(h))).toBe(h);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
  });
});

describe('safetensors', () => {
  it('writes the documented layout: u64 header length, aligned JSON header, contiguous data', () => {
    const bytes = safetensorsBytes({ config, params, step: 7 }, 'f32');
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    expect(header.__metadata__).toMatchObject({ format: 'pt', step: '7' });
    const table = buildParameterTable(config);
    expect(Object.keys(header).filter((k) => k !== '__metadata__')).toEqual(table.tensors.map((t) => t.name));
    const qkv = header['transformer.h.1.attn.c_attn.weight'];
    expect(qkv).toMatchObject({ dtype: 'F32', shape: [config.nEmbd, 3 * config.nEmbd] });
    expect(bytes.length).toBe(8 + n + 4 * table.total);
    // raw value check at the tensor's offset
    const t = table.byName.get('transformer.h.1.attn.c_attn.weight')!;
    expect(new DataView(bytes.buffer).getFloat32(8 + n + qkv.data_offsets[0] + 4 * 5, true)).toBe(params[t.offset + 5]);
  });

  it('rejects truncated, hole-y and foreign files with named errors', () => {
    const good = writeSafetensors([{ name: 'a', shape: [2], data: new Float32Array([1, 2]) }], 'F32', { format: 'pt' });
    expect(readSafetensors(good, 'x').tensors.get('a')!.data).toEqual(new Float32Array([1, 2]));
    expect(() => readSafetensors(good.subarray(0, good.length - 1), 'x.safetensors')).toThrow(/x\.safetensors: tensor "a" data_offsets/);
    expect(() => readSafetensors(new Uint8Array([...good, 0, 0, 0, 0]), 'x')).toThrow(/4 trailing bytes/);
    expect(() => readSafetensors(new TextEncoder().encode('hello world, not safetensors'), 'x')).toThrow(/header length .* is invalid/);
    expect(() => readSafetensors(new Uint8Array(4), 'x')).toThrow(/too short/);
  });
});

describe('export directory', () => {
  it('writes every HF file with GPT-2 config fields and the byte-level tokenizer', () => {
    const dir = tmp();
    const written = exportModel(dir, { config, params, step: 3 });
    expect(written.map((p) => p.slice(dir.length + 1))).toEqual([...EXPORT_FILES]);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_embd: 48, n_layer: 2, n_head: 4, n_positions: 16,
      n_ctx: 16, vocab_size: 257, layer_norm_epsilon: 1e-5, activation_function: 'gelu_new', tie_word_embeddings: true,
      bos_token_id: EOS_ID, eos_token_id: EOS_ID, torch_dtype: 'float32',
    });
    const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    const vocab = tok.model.vocab as Record<string, number>;
    expect(Object.keys(vocab).length).toBe(256);
    expect(Object.values(vocab).sort((a, b) => a - b)).toEqual(Array.from({ length: 256 }, (_, i) => i));
    expect(vocab['A']).toBe(65);
    expect(vocab[bytesToUnicode()[0x20]]).toBe(0x20); // space -> 'Ġ' in GPT-2's map
    expect(bytesToUnicode()[0x20]).toBe('Ġ');
    expect(tok.model.merges).toEqual([]);
    expect(tok.added_tokens[0]).toMatchObject({ id: 256, content: '<|endoftext|>', special: true });
    expect(JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'))).toMatchObject({ eos_token_id: 256 });
  });

  it('f32 export imports back bit-exactly; f16 within half precision', () => {
    const dir = tmp();
    exportModel(dir, { config, params, step: 11 });
    const back = importModel(dir);
    expect(back.config).toEqual(config);
    expect(back.step).toBe(11);
    expect(back.dtype).toBe('F32');
    expect(Buffer.from(back.params.buffer).equals(Buffer.from(params.buffer))).toBe(true);

    const dir16 = tmp();
    exportModel(dir16, { config, params }, { dtype: 'f16' });
    expect(readFileSync(join(dir16, 'model.safetensors')).length).toBeLessThan(readFileSync(join(dir, 'model.safetensors')).length * 0.51);
    const half = importModel(dir16);
    expect(half.dtype).toBe('F16');
    let maxRel = 0;
    for (let i = 0; i < params.length; i++) {
      if (Math.abs(params[i]) > 1e-4) maxRel = Math.max(maxRel, Math.abs(half.params[i] - params[i]) / Math.abs(params[i]));
    }
    expect(maxRel).toBeLessThanOrEqual(2 ** -11);
    expect(maxRel).toBeGreaterThan(0);
  });

  it('import names missing, misshapen, untied and unknown tensors and bad configs', () => {
    const table = buildParameterTable(config);
    const tensors = table.tensors.map((t) => ({ name: t.name, shape: t.shape, data: params.subarray(t.offset, t.offset + t.size) }));
    const file = (list: typeof tensors) => writeSafetensors(list, 'F32', { format: 'pt' });
    expect(() => importSafetensors(file(tensors.filter((t) => t.name !== 'transformer.h.1.ln_2.bias')), 'm', config))
      .toThrow(/missing 1 tensor\(s\): transformer\.h\.1\.ln_2\.bias/);
    expect(() => importSafetensors(file(tensors.map((t) => t.name === 'transformer.wpe.weight' ? { ...t, shape: [t.shape[1], t.shape[0]] } : t)), 'm', config))
      .toThrow(/transformer\.wpe\.weight has shape \[48,16\], config\.json implies \[16,48\]/);
    const wte = tensors[0];
    expect(importSafetensors(file([...tensors, { ...wte, name: 'lm_head.weight' }]), 'm', config).params).toEqual(params);
    expect(() => importSafetensors(file([...tensors, { ...wte, name: 'lm_head.weight', data: wte.data.map((v) => v + 1) }]), 'm', config))
      .toThrow(/lm_head\.weight differs/);
    expect(() => importSafetensors(file([...tensors, { name: 'extra', shape: [1], data: new Float32Array(1) }]), 'm', config))
      .toThrow(/unexpected tensor transformer\.extra/);
    // GPT2Model-style names without the prefix are accepted
    expect(importSafetensors(file(tensors.map((t) => ({ ...t, name: t.name.slice('transformer.'.length) }))), 'm', config).params).toEqual(params);

    const dir = tmp();
    exportModel(dir, { config, params });
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, activation_function: 'relu' }));
    expect(() => importModel(dir)).toThrow(/activation_function must be "gelu_new"/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, n_layer: 3 }));
    expect(() => importModel(dir)).toThrow(/missing 12 tensor\(s\): transformer\.h\.2\./);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, n_head: 5 }));
    expect(() => importModel(dir)).toThrow(/nEmbd \(48\) must be divisible by nHead \(5\)/);
    writeFileSync(cfgPath, '{not json');
    expect(() => importModel(dir)).toThrow(/config\.json: not valid JSON/);
    expect(() => importModel(join(dir, 'nope'))).toThrow(/cannot read .*nope\/config\.json \(ENOENT\)/);
  });

  it('importForTraining accepts the run\'s config and names every field that differs', () => {
    const dir = tmp();
    exportModel(dir, { config, params, step: 2 });
    expect(importForTraining(dir, config).params).toEqual(params);
    expect(() => importForTraining(dir, { ...config, nLayer: 3, nEmbd: 64 }))
      .toThrow(/model config differs from this run's: nLayer 2 \(export\) vs 3 \(run\), nEmbd 48 \(export\) vs 64 \(run\)/);
  });
});
