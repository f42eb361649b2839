// The trainer and a step's leases without sockets: exactly-once bookkeeping, LATE vs DUPLICATE vs
// UNKNOWN_TASK, and a checkpoint taken mid-step that rewinds to the step's start (so on resume
// the step's samples are leased again: nothing lost, nothing doubled).
import { describe, expect, it } from 'vitest';
import { syntheticDataset } from '../../shared/data/index.ts';
import { validateConfig } from '../../coordinator/config.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { Trainer } from '../../coordinator/train/trainer.ts';
import type { Lease } from '../../coordinator/train/step-work.ts';
import type { ResultMsg } from '../../shared/protocol/messages.ts';

const cfg = validateConfig({ preset: 'tiny', globalBatch: 6, seed: 3, runDir: '/nonexistent' });
const make = () => new Trainer(cfg, presetConfig('tiny'), syntheticDataset(15, 16));

function result(t: Trainer, l: Lease): { r: ResultMsg; tokens: number } {
  const { tokens } = t.batchOf(l);
  const grads = new Float32Array(t.paramCount).fill(1e-3);
  return { r: { taskId: l.id, step: l.step, version: l.version, loss: 1, tokens, grads, gradNorm: 0, nonFinite: 0, timings: { totalMs: 1 } }, tokens };
}

describe('trainer', () => {
  it('follows --stable-fraction: warmup-stable-decay by default (0.8), the cosine at 0', () => {
    expect(make().schedule).toEqual({ lr: 1e-3, minLr: 1e-5, warmupSteps: 200, totalSteps: 6000, stableSteps: 4800 });
    const wsd = make();
    expect(wsd.lr(4799)).toBe(1e-3);
    expect(wsd.lr(5400)).toBeCloseTo((1e-3 + 1e-5) / 2, 12);
    const cosine = new Trainer({ ...cfg, stableFraction: 0 }, presetConfig('tiny'), syntheticDataset(15, 16));
    expect(cosine.schedule.stableSteps).toBe(0);
    expect(cosine.lr(3100)).toBeCloseTo(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + Math.cos(Math.PI * (3100 - 200) / 5800)), 12);
  });

  it('classifies results: live lease, other worker, expired (LATE), done (DUPLICATE), foreign (UNKNOWN_TASK)', () => {
    const t = make();
    const w = t.startStep(0)!;
    const a = w.lease('A', 2, 0, 1000)!;
    const b = w.lease('B', 2, 0, 1000)!;
    expect(t.check(a.id, 'B')).toMatchObject({ code: 'NOT_YOUR_TASK' });
    expect(w.expire(1500).map((l) => l.id)).toEqual([a.id, b.id]);
    expect(t.check(a.id, 'A')).toMatchObject({ code: 'LATE' });
    const a2 = w.lease('C', 6, 1500, 1000)!; // the whole pool again: a's and b's range and the rest
    expect(a2.id).not.toBe(a.id);
    const { r, tokens } = result(t, a2);
    expect(t.accept(a2, r, tokens, 'C')).toEqual({ ok: true });
    expect(t.check(a2.id, 'C')).toMatchObject({ code: 'DUPLICATE' });
    expect(t.check('someone-else.0.1', 'C')).toMatchObject({ code: 'UNKNOWN_TASK' });
  });

  it('a mid-step snapshot rewinds the cursor; the restored trainer re-leases the same samples', () => {
    const t = make();
    // Finish step 0 with one lease.
    let w = t.startStep(0)!;
    let l = w.lease('A', 6, 0, 1000)!;
    let x = result(t, l);
    t.accept(l, x.r, x.tokens, 'A');
    t.finishStep(1);
    // Step 1: half accepted, half in flight, then a checkpoint.
    w = t.startStep(2)!;
    const stepIds = [...w.ids];
    l = w.lease('A', 3, 2, 1000)!;
    x = result(t, l);
    t.accept(l, x.r, x.tokens, 'A');
    w.lease('B', 3, 2, 1000);
    const snap = t.snapshot({ preset: 'tiny', config: {} });
    expect(snap.meta.step).toBe(1);
    expect(snap.meta.cursor.position).toBe(6);
    expect(snap.meta.samplesTrained).toBe(6);
    const u = make();
    u.restore(snap, 'mem');
    expect([...u.startStep(3)!.ids]).toEqual(stepIds);
    expect(Array.from(u.params)).toEqual(Array.from(t.params)); // step-1 params are not yet changed
    expect(u.ledger.trained(0)).toBe(6);
  });

  it('proves exactly-once per epoch in the ledger, across a short end-of-epoch step', () => {
    const t = make();
    for (let s = 0; s < 3; s++) {
      const w = t.startStep(s)!;
      for (let l = w.lease('A', 4, s, 1000); l; l = w.lease('A', 4, s, 1000)) {
        const x = result(t, l);
        t.accept(l, x.r, x.tokens, 'A');
      }
      t.finishStep(s);
    }
    // 15 samples, batches of 6: steps of 6, 6, 3 (an epoch's last step is shorter, never spans epochs).
    expect(t.history.map((h) => h.epoch)).toEqual([0, 0, 0]);
    expect(t.ledger.complete(0)).toBe(true);
    expect(t.samplesTrained).toBe(15);
    expect(t.doubled).toBe(0);
    expect(t.startStep(4)!.epoch).toBe(1);
  });
});
