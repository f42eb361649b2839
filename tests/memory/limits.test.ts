import { describe, expect, it } from 'vitest';
import { checkBufferLimits } from '../../shared/memory/limits.ts';
import { PRESETS } from '../../shared/model/config.ts';

describe('WebGPU per-buffer limits', () => {
  it('flags gpt2 wte (50257x768x4 = 154 MB > 128 MiB) and says to split it into 2 row blocks', () => {
    const flags = checkBufferLimits(PRESETS.gpt2, 1, 128);
    const wte = flags.find((f) => f.name === 'transformer.wte.weight')!;
    expect(wte.bytes).toBe(50257 * 768 * 4);
    expect(wte.limit).toBe('maxStorageBufferBindingSize');
    expect(wte.blocks).toBe(2);
    expect(wte.rowsPerBlock * 768 * 4).toBeLessThanOrEqual(128 * 2 ** 20);
    expect(wte.rowsPerBlock * wte.blocks).toBeGreaterThanOrEqual(50257);
    expect(wte.advice).toMatch(/split into 2 row blocks/);
    // 128 tokens of logits = 25.7 MB: fine
    expect(flags.find((f) => f.name === 'logits')).toBeUndefined();
  });

  it('flags activations over maxBufferSize and the binding limit', () => {
    const flags = checkBufferLimits(PRESETS.gpt2, 4, 1024);
    const logits = flags.find((f) => f.name === 'logits')!;
    expect(logits.bytes).toBe(4 * 1024 * 50257 * 4);
    expect(logits.limit).toBe('maxBufferSize');
    expect(logits.blocks).toBe(Math.ceil((4 * 1024) / Math.floor((128 * 2 ** 20) / (50257 * 4))));
    expect(flags.find((f) => f.name.startsWith('attention'))!.shape).toEqual([4, 12, 1024, 1024]);
  });

  it('16-bit inference weights are half the size: gpt2-medium wte (103 MB) then fits 128 MiB', () => {
    expect(checkBufferLimits(PRESETS['gpt2-medium'], 1, 64).map((f) => f.name)).toEqual(['transformer.wte.weight']);
    expect(checkBufferLimits(PRESETS['gpt2-medium'], 1, 64, {}, true, 2)).toEqual([]);
    const xl = checkBufferLimits(PRESETS['gpt2-xl'], 1, 64, {}, false, 2)[0];
    expect(xl.bytes).toBe(50257 * 1600 * 2);
    expect(xl.advice).toMatch(/16-bit/);
  });

  it('nothing is flagged under large limits or for the tiny model', () => {
    expect(checkBufferLimits(PRESETS.gpt2, 1, 1024, { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 32 })).toEqual([]);
    expect(checkBufferLimits(PRESETS.tiny, 8, 64)).toEqual([]);
  });
});
