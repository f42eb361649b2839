// Tasks are sized by measured throughput: a worker 3x slower gets smaller leases than a fast one
// once both have been measured, and the fast one trains more of each step.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { startTestWorker, until, type TestWorker } from './test-worker.ts';

const dir = mkdtempSync(join(tmpdir(), 'coord-sched-'));
const ws: TestWorker[] = [];
afterAll(() => {
  ws.forEach((w) => w.close());
  rmSync(dir, { recursive: true, force: true });
});

describe('throughput-proportional leasing', () => {
  it('gives a slow worker smaller shares than a fast one', async () => {
    const G = 16;
    const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: G, maxSteps: 6, minWorkers: 2, maxMicroBatch: G,
      evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0 });
    try {
      // Each result costs the slow worker an extra 80 ms per sample.
      const slow = startTestWorker(c.url, { name: 'slow', beforeResult: (t) => 80 * t.B });
      const fast = startTestWorker(c.url, { name: 'fast' });
      ws.push(slow, fast);
      await until(() => c.trainer.step >= 6, 60_000, '6 steps');
      // Step 0: nothing measured yet, equal halves.
      expect(slow.tasks[0].B).toBe(G / 2);
      // Later steps: the slow worker's first lease of a step is smaller than the fast one's.
      const firstB = (w: TestWorker, step: number) => w.tasks.find((t) => t.step === step)?.B ?? 0;
      for (const step of [3, 4, 5]) expect(firstB(slow, step), `step ${step}`).toBeLessThan(firstB(fast, step));
      const trained = (w: TestWorker) => w.tasks.filter((t) => t.step >= 2 && w.acks.some((a) => a.taskId === t.taskId)).reduce((a, t) => a + t.B, 0);
      expect(trained(fast)).toBeGreaterThan(1.5 * trained(slow));
    } finally {
      await c.close();
    }
  });

  it('plans no micro-batch larger than a step: a big worker under the default batch of 8 gets 8, not 64', async () => {
    // A fixed-shape engine (WebGPU) pads every task to its plan's micro-batch: a 64-row plan under
    // a batch of 8 computed 8x the rows. Preference pairs are two rows each.
    const base = { port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, maxSteps: 0, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false } as const;
    for (const [extra, want] of [[{}, 8], [{ globalBatch: 100 }, 64], [{ globalBatch: 3, maxMicroBatch: 2 }, 2]] as const) {
      const c = await startCoordinator({ ...base, ...extra });
      try {
        const w = startTestWorker(c.url, { name: 'big', memory: 8 * 2 ** 30 });
        ws.push(w);
        expect((await w.welcome).plan.microBatch, JSON.stringify(extra)).toBe(want);
        const r = await fetch(`${c.url}/api/plan?memory=8GiB`);
        expect((await r.json()).example.microBatch).toBe(want);
        w.close();
      } finally {
        await c.close();
      }
    }
  });
});
