// Parameter count formula, GPT-2 initialisation statistics and determinism, batch validation.
import { describe, expect, it } from 'vitest';
import { parameterCount, PRESETS } from '../../../shared/model/config.ts';
import { CpuGpt } from '../../../shared/model/cpu/gpt.ts';
import { initParameters } from '../../../shared/model/init.ts';
import { buildParameterTable } from '../../../shared/model/parameters.ts';

describe('parameter count', () => {
  it('GPT-2 small = 124,439,808 and gpt2-xl = 1,557,611,200 (table and formula agree)', () => {
    expect(parameterCount(PRESETS.gpt2)).toBe(124_439_808);
    expect(buildParameterTable(PRESETS.gpt2).total).toBe(124_439_808);
    expect(parameterCount(PRESETS['gpt2-xl'])).toBe(1_557_611_200);
  });
});

describe('initParameters', () => {
  const config = PRESETS.small;
  const table = buildParameterTable(config);
  const p = initParameters(config, 42);

  const stats = (name: string) => {
    const t = table.byName.get(name)!;
    const v = p.subarray(t.offset, t.offset + t.size);
    let s = 0;
    let ss = 0;
    for (const x of v) {
      s += x;
      ss += x * x;
    }
    const mean = s / v.length;
    return { mean, std: Math.sqrt(ss / v.length - mean * mean), v };
  };

  it('is deterministic per seed and differs across seeds', () => {
    expect(Buffer.from(initParameters(config, 42).buffer).equals(Buffer.from(p.buffer))).toBe(true);
    expect(Buffer.from(initParameters(config, 43).buffer).equals(Buffer.from(p.buffer))).toBe(false);
  });

  it('normal(0, 0.02) for embeddings and linear weights, 0.02/sqrt(2L) for residual projections', () => {
    for (const name of ['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.h.0.attn.c_attn.weight',
      'transformer.h.2.mlp.c_fc.weight']) {
      const { mean, std } = stats(name);
      expect(Math.abs(mean), name).toBeLessThan(0.002);
      expect(Math.abs(std - 0.02), name).toBeLessThan(0.001);
    }
    const want = 0.02 / Math.sqrt(2 * config.nLayer);
    for (const name of ['transformer.h.1.attn.c_proj.weight', 'transformer.h.4.mlp.c_proj.weight']) {
      expect(Math.abs(stats(name).std - want) / want, name).toBeLessThan(0.05);
    }
  });

  it('biases 0, LayerNorm weight 1 and bias 0', () => {
    for (const t of table.tensors) {
      const v = p.subarray(t.offset, t.offset + t.size);
      if (t.kind === 'bias' || (t.kind === 'layernorm' && t.name.endsWith('.bias'))) expect(v.every((x) => x === 0), t.name).toBe(true);
      if (t.kind === 'layernorm' && t.name.endsWith('.weight')) expect(v.every((x) => x === 1), t.name).toBe(true);
    }
  });
});

describe('batch validation', () => {
  const config = PRESETS.tiny;
  const model = new CpuGpt(config);
  const params = initParameters(config, 1);
  const ok = () => ({ B: 1, T: 4, inputs: new Int32Array([1, 2, 3, 4]), targets: new Int32Array([2, 3, 4, 5]), mask: new Uint8Array([1, 1, 1, 1]) });

  it('rejects bad shapes and token ids with named codes', () => {
    expect(() => model.forward(params, { ...ok(), T: 65 })).toThrow(/contextLength/);
    expect(() => model.forward(params, { ...ok(), inputs: new Int32Array(3) })).toThrow(/inputs has 3 entries/);
    expect(() => model.forward(params, { ...ok(), inputs: new Int32Array([1, 2, 257, 4]) })).toThrow(expect.objectContaining({ code: 'ERR_TOKEN_RANGE' }));
    expect(() => model.forward(params, { ...ok(), targets: new Int32Array([2, -1, 4, 5]) })).toThrow(/targets\[1\]/);
    expect(() => model.forward(params.subarray(1), ok())).toThrow(expect.objectContaining({ code: 'ERR_PARAM_SIZE' }));
  });

  it('accepts any target where mask is 0 (padding)', () => {
    const b = { ...ok(), targets: new Int32Array([2, -1, 4, 5]), mask: new Uint8Array([1, 0, 1, 1]) };
    expect(model.forward(params, b).tokens).toBe(3);
  });
});
