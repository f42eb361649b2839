// Synchronous data parallelism is exact: K workers on splits of the global batch produce the same
// loss and parameters, step after step, as ONE worker computing the whole batch (same seed, so the
// same data order): token-weighted mean of per-task mean gradients == the mean over all tokens.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { startTestWorker, until, type TestWorker } from './test-worker.ts';

const STEPS = 10;
const G = 12;
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

async function run(workers: number, maxMicroBatch: number, foldThreads = 'auto') {
  const dir = mkdtempSync(join(tmpdir(), 'coord-eq-'));
  const c: CoordinatorHandle = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: G, maxSteps: STEPS, lr: 3e-3, warmupSteps: 2,
    evalEvery: 0, checkpointEvery: 0, minWorkers: workers, maxMicroBatch, logLevel: 'silent', resume: false, verifyRate: 0, foldThreads,
  });
  const params: Float32Array[] = [];
  const tasksPerStep = new Map<number, number>();
  c.bus.on('step', () => params.push(new Float32Array(c.trainer.params)));
  const ws: TestWorker[] = [];
  for (let i = 0; i < workers; i++) ws.push(startTestWorker(c.url, { name: `w${i}` }));
  cleanups.push(async () => {
    ws.forEach((w) => w.close());
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await until(() => c.trainer.step >= STEPS, 90_000, `${STEPS} steps with ${workers} worker(s)`);
  for (const w of ws) for (const t of w.tasks) tasksPerStep.set(t.step, (tasksPerStep.get(t.step) ?? 0) + 1);
  const staged = (c.trainer.aggregator as { stagedAdds?: number }).stagedAdds ?? 0;
  return { losses: c.trainer.history.map((h) => h.loss), params, tasksPerStep, ws, aggregator: c.trainer.aggregator.constructor.name, staged };
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / n);
}

describe('K workers equal one worker', () => {
  it('3 workers on splits (their gradients staged by the scan and folded on 2 fold threads) match 1 worker on the whole batch (folded in the event loop) within 1e-6 per step over 10 steps', async () => {
    const one = await run(1, G);
    const three = await run(3, 4, '2');
    expect([one.aggregator, three.aggregator]).toEqual(['MeanAggregator', 'ThreadedMeanAggregator']);
    // One worker computed each step as a single task of the whole batch...
    expect([...one.tasksPerStep.values()]).toEqual(Array(STEPS).fill(1));
    expect(one.ws[0].tasks.every((t) => t.B === G)).toBe(true);
    // ...three workers as several tasks, each of them contributing.
    expect([...three.tasksPerStep.values()].every((n) => n >= 3)).toBe(true);
    expect(three.ws.every((w) => w.acks.length > 0)).toBe(true);
    // Each acknowledged result reached the fold threads as the copy its scan staged (fold-threads.ts).
    expect(three.staged).toBe(three.ws.reduce((a, w) => a + w.acks.length, 0));
    expect(one.params).toHaveLength(STEPS);
    for (let s = 0; s < STEPS; s++) {
      expect(Math.abs(three.losses[s] - one.losses[s]) / one.losses[s]).toBeLessThan(1e-6);
      expect(relDiff(three.params[s], one.params[s])).toBeLessThan(1e-6);
    }
    // And training did move the parameters (the comparison is not between two unchanged vectors).
    expect(relDiff(one.params[STEPS - 1], one.params[0])).toBeGreaterThan(1e-3);
  });
});
