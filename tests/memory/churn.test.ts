import { describe, expect, it } from 'vitest';
import { simulateChurn } from '../../shared/memory/churn.ts';
import { parseDeviceSpec } from '../../shared/memory/devices.ts';
import { shapeFromPreset } from '../../shared/memory/model-shape.ts';
import { AppError } from '../../shared/errors.ts';

// 512 tokens: GPT-2's logits of one 1024-token row (206 MB) exceed the default 128 MiB binding limit, so at
// 1024 no device could train whole rows (the plan, like the coordinator, makes no replica of it).
const train = { mode: 'train', precision: 'fp32', seq: 512 } as const;
const gpt2 = shapeFromPreset('gpt2');
const H = 3600;

describe('churn Monte Carlo', () => {
  it('one replica online a quarter of the time covers the model ~25% of the time', () => {
    const r = simulateChurn(gpt2, parseDeviceSpec('1x8GiB'), train, {
      meanSessionSeconds: 4 * H, meanOfflineSeconds: 12 * H, horizonSeconds: 60 * 24 * H, trials: 20, seed: 3,
    });
    expect(r.availability).toBe(0.25);
    expect(r.coveredShare).toBeGreaterThan(0.22);
    expect(r.coveredShare).toBeLessThan(0.28);
    // Throughput is the replica's whenever it is online.
    expect(r.expectedTokensPerSec).toBeCloseTo(r.coveredShare * r.allOnlineTokensPerSec, 6);
    // A returning replica receives the whole model (12 B/param) each session: ~1/16 h of sessions.
    expect(r.movedBytesPerHour).toBeGreaterThan(0);
  });

  it('more volunteers cover the model more of the time', () => {
    const opts = { meanSessionSeconds: 4 * H, horizonSeconds: 7 * 24 * H, trials: 10, seed: 1 };
    const one = simulateChurn(gpt2, parseDeviceSpec('1x8GiB'), train, opts);
    const ten = simulateChurn(gpt2, parseDeviceSpec('10x8GiB'), train, opts);
    // P(at least one of 10 online) = 1 - 0.75^10 = 0.94
    expect(ten.coveredShare).toBeGreaterThan(0.88);
    expect(ten.coveredShare).toBeGreaterThan(one.coveredShare + 0.5);
    expect(ten.meanOnline).toBeGreaterThan(2);
    expect(ten.meanOnline).toBeLessThan(3);
  });

  it('is reproducible from its seed and differs across seeds; lognormal sessions work too', () => {
    const devices = parseDeviceSpec('6x4GiB');
    const o = { meanSessionSeconds: 4 * H, horizonSeconds: 24 * H, trials: 5, distribution: 'lognormal' as const };
    const a = simulateChurn(gpt2, devices, train, { ...o, seed: 11 });
    const b = simulateChurn(gpt2, devices, train, { ...o, seed: 11 });
    const c = simulateChurn(gpt2, devices, train, { ...o, seed: 12 });
    expect(b).toEqual(a);
    expect(c.perTrial).not.toEqual(a.perTrial);
  });

  it('refuses bad or oversized runs', () => {
    expect(() => simulateChurn(gpt2, parseDeviceSpec('1x8GiB'), train, { meanSessionSeconds: -1 })).toThrow(AppError);
    expect(() => simulateChurn(gpt2, parseDeviceSpec('5000x8GiB'), train, { meanSessionSeconds: 60, trials: 100 })).toThrow(/limit/);
  });
});
