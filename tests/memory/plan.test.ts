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
    expect(p.warnings.join(' ')).toMatch(/wte .* split into 2 row blocks/);
    const big = planWorker(PRESETS.small, { probedBytes: 8 * GiB, maxStorageBufferBindingSize: 8 * 2 ** 20 });
    expect(big.microBatch * largestActivationBuffer(PRESETS.small, 1, big.seqLen).bytes).toBeLessThanOrEqual(8 * 2 ** 20);
    expect(big.reason).toMatch(/binding limit/);
  });

  it('a worker below 20 B x params gets the contiguous block range it could hold', () => {
    const p = planWorker(gpt2, { userCapBytes: 1 * GiB });
    expect(p.role).toBe('stage');
    const k = Math.floor(Math.floor(GiB / 20) / blockParams(gpt2));
    expect(p.layerRange).toEqual([0, k]);
    expect(k).toBe(7);
    expect(p.reason).toMatch(/7 of 12 blocks/);
    expect(breakdownTotal(p.breakdown)).toBeLessThanOrEqual(p.budgetBytes);
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
