// The unusual-result rule (coordinator/security/unusual.ts) on real gradients of the CPU reference:
// honest results of other batches pass; the same results sign-flipped, biased, rescaled or replaced
// by a crafted direction are flagged (then re-computed); nothing is judged before the window fills.
import { describe, expect, it } from 'vitest';
import { features, UnusualGuard } from '../../coordinator/security/unusual.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { Rng } from '../../shared/rng.ts';
import { instructionRow } from '../../shared/data/sequences.ts';

describe('unusual results', () => {
  it('flags sign flips, a small bias, scaling and a crafted direction; passes honest results', async () => {
    const cfg = presetConfig('tiny');
    const cpu = createCpuBackend(cfg);
    await cpu.setParams(initParameters(cfg, 1));
    const rng = new Rng(11);
    // Real-looking data (what honest gradients share a direction on): "a+b=" -> "a+b" rows.
    const enc = new TextEncoder();
    const grad = async () => {
      const B = 2;
      const T = 16;
      const batch = { B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), mask: new Uint8Array(B * T) };
      for (let b = 0; b < B; b++) {
        const x = rng.int(50);
        const y = rng.int(50);
        const row = instructionRow(Array.from(enc.encode(`${x}+${y}=`)), Array.from(enc.encode(String(x + y))), T);
        batch.inputs.set(row.inputs, b * T);
        batch.targets.set(row.targets, b * T);
        batch.mask.set(row.mask, b * T);
      }
      return (await cpu.forwardBackward(batch)).grads.slice();
    };
    const first = await grad();
    const ref = new Float32Array(first.length);
    for (let k = 0; k < 4; k++) (await grad()).forEach((x, i) => (ref[i] += x / 4)); // "the previous step's aggregate"
    const guard = new UnusualGuard();
    expect(guard.judge(features(first.map((x) => -x), ref))).toBeNull(); // no window yet: no judgement
    for (let k = 0; k < 14; k++) guard.accept(features(await grad(), ref));
    let honestFlags = 0;
    for (let k = 0; k < 6; k++) {
      const g = await grad();
      if (guard.judge(features(g, ref))) honestFlags++;
      expect(guard.judge(features(g.map((x) => -x), ref)), 'sign flip').toMatch(/cos/);
      expect(guard.judge(features(g.map((x) => x + 3e-4), ref)), 'bias 3e-4').toMatch(/mean/);
      expect(guard.judge(features(g.map((x) => 5 * x), ref)), 'scale 5').toMatch(/logNorm/);
    }
    expect(honestFlags).toBeLessThanOrEqual(1);
    const crafted = Float32Array.from({ length: ref.length }, () => rng.normal() * 1e-3);
    expect(guard.judge(features(crafted, ref)), 'crafted direction').not.toBeNull();
    cpu.dispose();
  });

  it('per worker, small deviations add up (CUSUM): a liar hiding at z = -2 per result is flagged by its 4th; an honest stream is not', () => {
    const rng = new Rng(5);
    const honest = () => ({ cos: 0.3 + 0.1 * rng.normal(), mean: 1e-6 * rng.normal(), logNorm: 0.1 * rng.normal() });
    const guard = new UnusualGuard();
    for (let k = 0; k < 64; k++) guard.accept(honest());
    const flags: number[] = [];
    for (let k = 1; k <= 6; k++) if (guard.judge({ ...honest(), cos: 0.1 }, 'liar')) flags.push(k); // z ~ -2: under the single-result limit
    expect(flags[0]).toBeLessThanOrEqual(4);
    expect(flags[0]).toBeGreaterThan(1); // not its first result alone: the sum flags
    let honestFlags = 0;
    for (let k = 0; k < 60; k++) if (guard.judge(honest(), 'honest')) honestFlags++;
    expect(honestFlags).toBeLessThanOrEqual(1);
  });
});
