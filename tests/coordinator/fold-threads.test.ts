// --fold-threads: the streaming mean folded on worker threads equals the event loop's
// MeanAggregator (one thread: bit for bit, the same folds in the same order; two: to float64
// rounding), the gradient is transferred (the sender's array detached, no copy) unless its buffer
// holds other data, and a failed thread makes the trainer redo the step in the event loop: every
// accepted lease reopened, nothing lost or doubled, the next finish() correct.
import { afterAll, describe, expect, it } from 'vitest';
import { MeanAggregator } from '../../coordinator/train/aggregate.ts';
import { foldBatchFor, STAGE_MAX_THREADS, stagingSlots, ThreadedMeanAggregator } from '../../coordinator/train/fold-threads.ts';
import { measuredNorm, scannedDigest, validateResult } from '../../shared/protocol/validate.ts';
import type { ResultMsg } from '../../shared/protocol/messages.ts';
import { Trainer } from '../../coordinator/train/trainer.ts';
import { foldThreadCount, validateConfig } from '../../coordinator/config.ts';
import { syntheticDataset } from '../../shared/data/index.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { Rng } from '../../shared/rng.ts';

const opened: Array<{ close?: () => Promise<void> }> = [];
afterAll(async () => {
  for (const a of opened) await a.close?.();
});

function grad(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return new Float32Array(n).map(() => (r.next() - 0.5) * 1e-2);
}

function resultOf(grads: Float32Array, tokens: number): ResultMsg {
  return { taskId: 't', step: 0, version: 0, loss: 1, tokens, grads, gradNorm: 0, nonFinite: 0, timings: { totalMs: 1 } };
}

function meanOf(n: number, grads: Float32Array[], tokens: number[]): Float32Array {
  const m = new MeanAggregator(n);
  m.begin(0);
  grads.forEach((g, i) => m.add(g, tokens[i], 'w'));
  const out = new Float32Array(n);
  m.finish(out);
  return out;
}

describe('fold threads', () => {
  it('one thread gives the bits of the event-loop mean; two agree to 1e-6; over two steps', () => {
    const n = 40_003;
    for (const threads of [1, 2]) {
      const agg = new ThreadedMeanAggregator(n, threads);
      opened.push(agg);
      for (const step of [0, 1]) {
        const grads = Array.from({ length: 9 }, (_, i) => grad(n, 1000 * step + i));
        const tokens = grads.map((_, i) => 5 + 3 * i + step);
        const want = meanOf(n, grads, tokens);
        agg.begin(step);
        // Own buffers, as ws hands frames over (the copies are transferred, `grads` stay ours).
        grads.forEach((g, i) => agg.add(new Float32Array(g), tokens[i], `w${i}`));
        expect(agg.count).toBe(9);
        const got = new Float32Array(n);
        expect(agg.finish(got)).toBe(tokens.reduce((a, b) => a + b, 0));
        if (threads === 1) expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
        let worst = 0;
        for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(1e-12, Math.abs(want[i])));
        expect(worst, `${threads} threads, step ${step}`).toBeLessThan(1e-6);
      }
    }
  });

  it('staged: the scan copies each gradient into a slot and the thread folds it in place, the bits of the event-loop mean, without waiting forever when every slot is in flight', () => {
    const n = 40_003;
    const agg = new ThreadedMeanAggregator(n, 1);
    opened.push(agg);
    expect([agg.slotsPerThread, agg.batch]).toEqual([8, 4]);
    for (const step of [0, 1]) {
      // 30 results: more than the slots, so stage() waits on the thread's folds (back-pressure).
      const grads = Array.from({ length: 30 }, (_, i) => grad(n, 77 * step + i));
      const tokens = grads.map((_, i) => 3 + i);
      agg.begin(step);
      const staged0 = agg.stagedAdds;
      for (let i = 0; i < grads.length; i++) {
        const frame = new Float32Array(grads[i]);
        const v = validateResult(resultOf(frame, tokens[i]), { paramCount: n, digest: true, stage: (g) => agg.stage(g) });
        if (!v.ok) throw new Error(v.message);
        // The same norm and replay digest as a scan without a copy (of other bytes-equal arrays).
        const plain = new Float32Array(grads[i]);
        expect(validateResult(resultOf(plain, tokens[i]), { paramCount: n, digest: true }).ok).toBe(true);
        expect(measuredNorm(v.value.grads)).toBe(measuredNorm(plain));
        expect(scannedDigest(v.value.grads)).toBe(scannedDigest(plain));
        agg.add(v.value.grads, tokens[i], `w${i}`);
        expect(frame.length, 'staged: the frame is neither transferred nor detached').toBe(n);
      }
      expect(agg.stagedAdds - staged0).toBe(30);
      const got = new Float32Array(n);
      expect(agg.finish(got)).toBe(tokens.reduce((a, b) => a + b, 0));
      const want = meanOf(n, grads, tokens);
      expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer)), `step ${step}`).toBe(true);
    }
    expect(agg.copies).toBe(0);
  });

  it('staged: a refused result leaves its slot to the next; added after its copy was overwritten, it is transferred; a step begun with folds pending frees their slots', () => {
    const n = 40_003;
    const agg = new ThreadedMeanAggregator(n, 1);
    opened.push(agg);
    const stage = (g: Float32Array) => {
      const v = validateResult(resultOf(g, 4), { paramCount: n, stage: (x) => agg.stage(x) });
      if (!v.ok) throw new Error(v.message);
      return v.value.grads;
    };
    agg.begin(0);
    const late = stage(grad(n, 1)); // scanned, then held (e.g. while it is re-computed)
    const refused = Array.from({ length: 8 }, (_, i) => stage(grad(n, 10 + i))); // never added
    agg.add(late, 4, 'late'); // its slot went to the 8th refused one
    expect(late.length, 'transferred: detached').toBe(0);
    expect(agg.stagedAdds).toBe(0);
    agg.add(refused[7], 4, 'r7'); // its copy is current
    expect(agg.stagedAdds).toBe(1);
    let got = new Float32Array(n);
    agg.finish(got);
    expect(Buffer.from(got.buffer).equals(Buffer.from(meanOf(n, [grad(n, 1), grad(n, 10 + 7)], [4, 4]).buffer))).toBe(true);
    // Three added (a pass is four): begin() drops them unfolded, and their slots are free again.
    agg.begin(1);
    for (let i = 0; i < 3; i++) agg.add(stage(grad(n, 30 + i)), 4, `d${i}`);
    agg.begin(2);
    const kept = Array.from({ length: 12 }, (_, i) => grad(n, 50 + i));
    for (const g of kept) agg.add(stage(new Float32Array(g)), 4, 'k');
    got = new Float32Array(n);
    expect(agg.finish(got)).toBe(48);
    expect(Buffer.from(got.buffer).equals(Buffer.from(meanOf(n, kept, kept.map(() => 4)).buffer))).toBe(true);
    expect(agg.stagedAdds).toBe(1 + 3 + 12);
  });

  it('pools of more than STAGE_MAX_THREADS threads transfer, a closed pool stages nothing; a gradient too large for slots beside its accumulator gets fewer, then none', async () => {
    const big = new ThreadedMeanAggregator(1000, STAGE_MAX_THREADS + 1);
    opened.push(big);
    expect(big.slotsPerThread).toBe(0);
    expect(big.stage(new Float32Array(1000))).toBeNull();
    const one = new ThreadedMeanAggregator(1000, 1);
    opened.push(one);
    expect(one.stage(new Float32Array(1000))).not.toBeNull();
    await one.close();
    expect(one.stage(new Float32Array(1000))).toBeNull();
    expect(stagingSlots(40_003)).toBe(8);
    expect([stagingSlots(124_439_808), foldBatchFor(stagingSlots(124_439_808))]).toEqual([6, 3]); // GPT-2 small
    expect(stagingSlots(400_000_000)).toBe(0); // 3.2 GB of accumulator: no room for two
  });

  it('transfers a gradient that owns its buffer and copies one that shares it', () => {
    const n = 20_000;
    const agg = new ThreadedMeanAggregator(n, 1);
    opened.push(agg);
    agg.begin(0);
    const own = grad(n, 1);
    agg.add(own, 4, 'a');
    expect(own.length).toBe(0); // detached: moved to the thread, not copied
    const big = new Float32Array(3 * n);
    const slice = big.subarray(n, 2 * n);
    slice.set(grad(n, 2));
    agg.add(slice, 4, 'b');
    expect(slice.length).toBe(n); // the shared buffer stays ours
    expect(agg.copies).toBe(1);
    const out = new Float32Array(n);
    agg.finish(out);
    const want = meanOf(n, [grad(n, 1), grad(n, 2)], [4, 4]);
    expect(Buffer.from(out.buffer).equals(Buffer.from(want.buffer))).toBe(true);
  });

  it('a failed thread: finish throws ERR_FOLD_THREAD and the trainer redoes the step in the event loop', async () => {
    const cfg = validateConfig({ preset: 'tiny', globalBatch: 6, seed: 3, runDir: '/nonexistent', foldThreads: '1' });
    expect(foldThreadCount(cfg, 1e9)).toBe(1);
    const t = new Trainer(cfg, presetConfig('tiny'), syntheticDataset(15, 16));
    opened.push(t);
    expect(t.aggregator).toBeInstanceOf(ThreadedMeanAggregator);
    const failures: string[] = [];
    t.onFoldFailure = (m) => failures.push(m);
    const w = t.startStep(0)!;
    const answer = (id: string) => {
      const l = w.active.get(id)!;
      const { tokens } = t.batchOf(l);
      return t.accept(l, { taskId: l.id, step: l.step, version: l.version, loss: 1, tokens, grads: new Float32Array(t.paramCount).fill(1e-3), gradNorm: 0, nonFinite: 0, timings: { totalMs: 1 } }, tokens, l.workerId);
    };
    const a = w.lease('A', 3, 0, 1000)!;
    const b = w.lease('B', 3, 0, 1000)!;
    expect(answer(a.id)).toEqual({ ok: true });
    (t.aggregator as ThreadedMeanAggregator).injectFailure(0);
    expect(answer(b.id)).toEqual({ ok: true });
    // The failure reached the trainer at b's add or reaches it at finish: either way the step is redone.
    if (!w.done) expect(failures).toHaveLength(1);
    else expect(() => t.finishStep(1)).toThrow(/ERR_FOLD_THREAD|fold thread/);
    expect(failures).toHaveLength(1);
    expect(t.aggregator).toBeInstanceOf(MeanAggregator);
    expect(w.done).toBe(false);
    expect(t.step).toBe(0); // no optimizer step from an incomplete sum
    // The whole step again, in the event loop: all 6 samples, once.
    const again: number[] = [];
    for (let c = w.lease('C', 6, 1, 1000); c; c = w.lease('C', 6, 1, 1000)) {
      again.push(...c.ids);
      expect(answer(c.id)).toEqual({ ok: true });
    }
    expect(again.sort((x, y) => x - y)).toEqual([...w.ids].sort((x, y) => x - y));
    expect(w.done).toBe(true);
    const s = t.finishStep(2);
    expect(s.step).toBe(0);
    expect(t.samplesTrained).toBe(6);
    expect(t.doubled).toBe(0);
    expect(t.foldFailures).toBe(1);
  });

  it('--fold-threads auto: none under 64 MiB of gradient, else at least one', () => {
    const auto = validateConfig({ preset: 'tiny', runDir: '/nonexistent' });
    expect(auto.foldThreads).toBe('auto');
    expect(foldThreadCount(auto, 1_000_000)).toBe(0);
    expect(foldThreadCount(auto, 124_439_808)).toBeGreaterThanOrEqual(1);
    expect(() => validateConfig({ preset: 'tiny', runDir: '/nonexistent', foldThreads: '65' })).toThrow(/--fold-threads must be auto or an integer in \[0, 64\]/);
  });
});
