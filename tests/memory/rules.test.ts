import { describe, expect, it } from 'vitest';
import { bytesPerParam, ruleBreakdown, breakdownTotal, blockParams } from '../../shared/memory/rules.ts';
import { layerActivationBytes, kvCacheBytes, trainingActivations } from '../../shared/memory/activations.ts';
import { estimateModel } from '../../shared/memory/estimate.ts';
import { shapeFromParams, shapeFromPreset, shapeFromConfig, inferLayers } from '../../shared/memory/model-shape.ts';
import { bytes, formatBytes, parseBytes, parseDuration, parseBandwidth, GiB } from '../../shared/memory/units.ts';
import { parameterCount, PRESETS } from '../../shared/model/config.ts';
import { AppError } from '../../shared/errors.ts';

describe('memory rules', () => {
  it('1B params: 4 GB fp32, 2 GB 16-bit, 1 GB int8, 20 GB to train (decimal GB)', () => {
    const s = shapeFromParams(1e9);
    expect(estimateModel(s, { mode: 'infer', precision: 'fp32' }).totalBytes).toBe(4e9);
    expect(estimateModel(s, { mode: 'infer', precision: 'fp16' }).totalBytes).toBe(2e9);
    expect(estimateModel(s, { mode: 'infer', precision: 'bf16' }).totalBytes).toBe(2e9);
    expect(estimateModel(s, { mode: 'infer', precision: 'int8' }).totalBytes).toBe(1e9);
    const t = estimateModel(s, { mode: 'train', precision: 'fp32' });
    expect(t.totalBytes).toBe(20e9);
    expect(t.breakdown).toEqual({ weights: 4e9, gradients: 4e9, optimizer: 8e9, activations: 4e9 });
    expect(t.total.GB).toBe(20);
    expect(t.total.GiB).toBeCloseTo(20e9 / 2 ** 30, 3);
    expect(bytesPerParam('train', 'fp32')).toBe(20);
  });

  it('a 7B model needs 140 GB to train', () => {
    const e = estimateModel(shapeFromParams(7e9), { mode: 'train', precision: 'fp32' });
    expect(e.totalBytes).toBe(140e9);
    expect(breakdownTotal(e.breakdown)).toBe(140e9);
    expect(e.rule).toContain('140 GB');
  });

  it('GPT-2 small has 124,439,808 params and gpt2-xl 1,557,611,200, by the shape and by the table formula', () => {
    expect(shapeFromPreset('gpt2').params).toBe(124_439_808);
    expect(shapeFromPreset('gpt2-xl').params).toBe(1_557_611_200);
    const s = shapeFromPreset('gpt2');
    // embeddings, 12 blocks, head: the head holds its own copy of the tied wte (the last stage's).
    expect(s.units.reduce((a, u) => a + u.params, 0)).toBe(parameterCount(PRESETS.gpt2) + 50257 * 768);
    expect(s.units).toHaveLength(14);
    expect(blockParams(PRESETS.gpt2)).toBe(7_087_872);
  });

  it('a bare count is split into inferred equal layers that sum to it', () => {
    const s = shapeFromParams(7e9);
    expect(s.nLayer).toBe(inferLayers(7e9));
    expect(s.units.reduce((a, u) => a + u.params, 0)).toBe(7e9);
    expect(shapeFromParams(1001, 10).units.map((u) => u.params)).toEqual([101, 100, 100, 100, 100, 100, 100, 100, 100, 100]);
    expect(() => shapeFromParams(-1)).toThrow(AppError);
    expect(() => shapeFromPreset('gpt5')).toThrow(/unknown model preset "gpt5"/);
    expect(() => shapeFromConfig({ ...PRESETS.tiny, nEmbd: 0 })).toThrow(/nEmbd/);
  });

  it('Korthikanti activations scaled for fp32, and the KV cache', () => {
    // s*b*h*(34 + 5*a*s/h) * 2 with s=1024, b=1, h=768, a=12: 1024*768*(34+80)*2
    expect(layerActivationBytes(PRESETS.gpt2, 1, 1024)).toBe(179_306_496);
    expect(layerActivationBytes(PRESETS.gpt2, 3, 1024)).toBe(3 * 179_306_496);
    // 2 * L * b * s * h * bytes
    expect(kvCacheBytes(PRESETS.gpt2, 1, 1024, 2)).toBe(2 * 12 * 1024 * 768 * 2);
    const a = trainingActivations(PRESETS.gpt2, 2, 128);
    expect(a.logits).toBe(2 * 2 * 128 * 50257 * 4);
    expect(a.total).toBe(a.layers + a.logits + a.embeddings);
  });

  it('says where the 20-byte rule under- and over-estimates', () => {
    const s = shapeFromPreset('gpt2');
    const long = estimateModel(s, { mode: 'train', precision: 'fp32', batch: 1, seq: 1024 });
    expect(long.explicit!.comparison).toMatch(/UNDER-estimates/);
    expect(long.explicit!.ratioToRule).toBeGreaterThan(1);
    expect(long.explicit!.totalBytes).toBe(16 * s.params + trainingActivations(PRESETS.gpt2, 1, 1024).total);
    const short = estimateModel(s, { mode: 'train', precision: 'fp32', batch: 1, seq: 64 });
    expect(short.explicit!.comparison).toMatch(/OVER-estimates/);
    expect(short.explicit!.ratioToRule).toBeLessThan(1);
    const inf = estimateModel(shapeFromPreset('gpt2-medium'), { mode: 'infer', precision: 'fp16', batch: 1, seq: 1024 });
    expect(inf.explicit!.kvCache).toBe(kvCacheBytes(PRESETS['gpt2-medium'], 1, 1024, 2));
    expect(inf.explicit!.comparison).toMatch(/KV cache/);
  });

  it('rejects fp16 training and bad shapes', () => {
    expect(() => estimateModel(shapeFromPreset('gpt2'), { mode: 'train', precision: 'fp16' })).toThrow(/fp32/);
    expect(() => estimateModel(shapeFromPreset('gpt2'), { mode: 'train', precision: 'fp32', seq: 2048 })).toThrow(/seq/);
    expect(ruleBreakdown(10, 'infer', 'int8')).toEqual({ weights: 10, gradients: 0, optimizer: 0, activations: 0 });
  });
});

describe('units', () => {
  it('parses and prints GB and GiB distinctly', () => {
    expect(parseBytes('8GiB')).toBe(8 * GiB);
    expect(parseBytes('80GB')).toBe(80e9);
    expect(parseBytes('512 mib')).toBe(512 * 2 ** 20);
    expect(parseBytes('1.5e9')).toBe(1.5e9);
    expect(() => parseBytes('GB')).toThrow(AppError);
    expect(() => parseBytes('8XB')).toThrow(/unknown unit/);
    expect(() => parseBytes('0GB')).toThrow(/positive/);
    expect(formatBytes(154_389_504)).toBe('154 MB (147 MiB)');
    expect(bytes(2 ** 30)).toMatchObject({ bytes: 2 ** 30, GiB: 1, GB: 1.074 });
    expect(parseDuration('4h')).toBe(14400);
    expect(parseDuration('30m')).toBe(1800);
    expect(() => parseDuration('soon')).toThrow(AppError);
    expect(parseBandwidth('1Gbps')).toBe(1e9);
    expect(parseBandwidth('12.5MB/s')).toBe(100e6);
    expect(() => parseBandwidth('1Gb')).toThrow(AppError);
  });
});
