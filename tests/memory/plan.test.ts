import { describe, expect, it } from 'vitest';
import { planWorker, WEBGPU_DEFAULT_LIMITS } from '../../shared/memory/plan.ts';
import { trainingActivations, largestActivationBuffer } from '../../shared/memory/activations.ts';
import { blockParams } from '../../shared/memory/rules.ts';
import { breakdownTotal } from '../../shared/memory/rules.ts';
import { PRESETS, parameterCount } from '../../shared/model/config.ts';
import { AppError } from '../../shared/errors.ts';

const GiB = 2 ** 30;
const gpt2 = PRESETS.gpt2;
const P = parameterCount(gpt2);

describe('planWorker', () => {
  it('takes the smallest of user cap and probe as the budget', () => {
    const a = planWorker(gpt2, { userCapBytes: 3 * GiB, probedBytes: 8 * GiB });
    expect(a.budgetBytes).toBe(3 * GiB);
    expect(a.budgetSource).toBe('user cap');
    const b = planWorker(gpt2, { userCapBytes: 9 * GiB, probedBytes: 8 * GiB });
    expect(b.budgetBytes).toBe(8 * GiB);
    expect(b.budgetSource).toBe('probe');
    expect(b.trainableParams).toBe(Math.floor((8 * GiB) / 20));
  });

  it('without probe or cap plans with one maxBufferSize and warns', () => {
    const p = planWorker(PRESETS.tiny, {});
    expect(p.budgetBytes).toBe(WEBGPU_DEFAULT_LIMITS.maxBufferSize);
    expect(p.budgetSource).toBe('adapter limits');
    expect(p.warnings.join(' ')).toMatch(/probe/);
    expect(p.role).toBe('replica');
  });

  it('a replica sizes its micro-batch from the memory left after 16 B/param', () => {
    const limits = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 4 * GiB };
    const p = planWorker(gpt2, { probedBytes: 8 * GiB, ...limits });
    expect(p.role).toBe('replica');
    expect(p.seqLen).toBe(1024);
    const perSeq = trainingActivations(gpt2, 1, 1024).total;
    expect(p.microBatch).toBe(Math.floor((8 * GiB - 16 * P) / perSeq));
    expect(p.microBatch).toBeGreaterThanOrEqual(1);
    expect(p.breakdown).toEqual({ weights: 4 * P, gradients: 4 * P, optimizer: 8 * P, activations: trainingActivations(gpt2, p.microBatch, 1024).total });
    expect(breakdownTotal(p.breakdown)).toBeLessThanOrEqual(p.budgetBytes);
  });

  it('the binding limit caps the micro-batch and, for GPT-2 logits at 1024 tokens, the sequence length', () => {
    const p = planWorker(gpt2, { probedBytes: 8 * GiB });
    // logits of one 1024-token sequence: 1024*50257*4 = 205.9 MB > 128 MiB
    expect(largestActivationBuffer(gpt2, 1, 1024).bytes).toBe(1024 * 50257 * 4);
    expect(p.seqLen).toBe(512);
    expect(p.microBatch).toBe(1);
    expect(p.reason).toMatch(/binding limit/);
    expect(p.warnings.join(' ')).toMatch(/wte .* binding limit .* 2 row blocks.* only middle stages/);
    const big = planWorker(PRESETS.small, { probedBytes: 8 * GiB, maxStorageBufferBindingSize: 8 * 2 ** 20 });
    expect(big.microBatch * largestActivationBuffer(PRESETS.small, 1, big.seqLen).bytes).toBeLessThanOrEqual(8 * 2 ** 20);
    expect(big.reason).toMatch(/binding limit/);
  });

  it('a worker below 20 B x params is a stage: the blocks it could hold beside one micro-batch\'s activations', () => {
    const p = planWorker(gpt2, { userCapBytes: 1 * GiB });
    expect(p.role).toBe('stage');
    // The stage model (contract of issue 12), by hand for one sequence of 1024 tokens, 2 in flight:
    // 20 B/param + per block Korthikanti x2 + stage inputs (2 x [T, C] fp32) + boundary buffers (3 x [T, C]).
    const row = 1024 * 768 * 4;
    const block = 20 * blockParams(gpt2) + 1024 * 768 * (34 + (5 * 12 * 1024) / 768) * 2;
    const middle = (k: number) => k * block + 2 * row + 3 * row;
    // First stage: wte + wpe at 20 B/param (788 MB) + one block + its embedding output leaves no room.
    const emb = (50257 + 1024) * 768;
    expect(20 * emb + block + row + 2 * 1024 * 4 + 2 * row).toBeGreaterThan(GiB);
    const k = [1, 2, 3, 4, 5].filter((n) => middle(n) <= GiB).length;
    expect(k).toBe(3);
    expect(p.layerRange).toEqual([1, 1 + k]);
    expect(p.reason).toMatch(/3 block\(s\) in the middle/);
    expect(breakdownTotal(p.breakdown)).toBeLessThanOrEqual(p.budgetBytes);
  });

  it('reported adapter limits: a replica needs its parameter buffer within maxBufferSize and wte within the binding limit', () => {
    const ok = planWorker(gpt2, { probedBytes: 8 * GiB, maxBufferSize: 2 * GiB, maxStorageBufferBindingSize: GiB }, { seqLen: 256 });
    expect(ok.role).toBe('replica');
    // The WebGPU defaults: 498 MB of parameters in one 256 MiB buffer cannot be allocated.
    const no = planWorker(gpt2, { probedBytes: 8 * GiB, ...WEBGPU_DEFAULT_LIMITS }, { seqLen: 256 });
    expect(no.role).toBe('stage');
    expect(no.warnings.join(' ')).toMatch(/cannot hold it whole/);
    // Neither end fits (wte 154 MB > 128 MiB): only middle blocks.
    expect(no.layerRange![0]).toBeGreaterThan(0);
    expect(no.layerRange![1]).toBeLessThan(12);
    expect(no.reason).toMatch(/in the middle/);
    expect(no.reason).not.toMatch(/first stage/);
  });

  it('too small for one block says how many bytes one block needs', () => {
    const p = planWorker(PRESETS['gpt2-xl'], { userCapBytes: 100e6 });
    expect(p.role).toBe('too-small');
    expect(p.microBatch).toBe(0);
    const need = 20 * blockParams(PRESETS['gpt2-xl']);
    expect(need).toBe(614_816_000);
    expect(p.reason).toContain(String(need));
  });

  it('honours a requested seqLen and rejects bad input without planning', () => {
    const p = planWorker(PRESETS.small, { probedBytes: GiB }, { seqLen: 32 });
    expect(p.seqLen).toBe(32);
    expect(() => planWorker(PRESETS.small, { probedBytes: -1 })).toThrow(AppError);
    expect(() => planWorker(PRESETS.small, { probedBytes: GiB }, { seqLen: 4096 })).toThrow(/seqLen/);
    expect(() => planWorker({ ...PRESETS.small, nHead: 3 }, { probedBytes: GiB })).toThrow(/divisible/);
  });
});
