// Coordinator + real socket.io workers (CPU reference) on loopback: the loss falls on the default
// task, evaluation runs, the API reports the run, and the exactly-once accounting holds.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { startTestWorker, until, type TestWorker } from './test-worker.ts';

const dirs: string[] = [];
const handles: CoordinatorHandle[] = [];
const workers: TestWorker[] = [];
afterAll(async () => {
  workers.forEach((w) => w.close());
  for (const h of handles) await h.close();
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

describe('training through the coordinator', () => {
  it('two workers train the default task: the loss falls, eval and status report it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coord-train-'));
    dirs.push(dir);
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: 16, maxSteps: 40, lr: 1e-2, minLr: 1e-3,
      warmupSteps: 5, evalEvery: 20, evalSamples: 8, checkpointEvery: 0, logLevel: 'silent', adminToken: 'test-token-123',
    });
    handles.push(c);
    workers.push(startTestWorker(c.url, { name: 'a' }), startTestWorker(c.url, { name: 'b' }));
    // Done when the max-steps eval and checkpoint (after the last step) are written too.
    await until(() => c.trainer.step >= 40 && c.ctx.status().checkpoint?.step === 40, 90_000, '40 steps and the final checkpoint');
    const h = c.trainer.history;
    const first = (h[0].loss + h[1].loss + h[2].loss) / 3;
    const last = (h[37].loss + h[38].loss + h[39].loss) / 3;
    expect(last).toBeLessThan(first * 0.7);
    // Both workers contributed.
    const s = await (await fetch(`${c.url}/api/status`)).json();
    expect(s.step).toBe(40);
    expect(s.workers.filter((w: { tasksDone: number }) => w.tasksDone > 0)).toHaveLength(2);
    expect(s.samplesTrained).toBe(40 * 16);
    expect(s.accounting.doubled).toBe(0);
    expect(s.eval).not.toBeNull();
    expect(s.eval.accuracy).toBeGreaterThanOrEqual(0);
    expect(s.model).toMatchObject({ preset: 'tiny', params: c.trainer.paramCount });
    expect(s.checkpoint?.step).toBe(40); // written when max-steps was reached
    for (const k of ['loss', 'tokensPerSec', 'epoch']) expect(s).toHaveProperty(k);
    const hist = await (await fetch(`${c.url}/api/history`)).json();
    expect(hist.loss).toHaveLength(40);
    expect(hist.evals.length).toBeGreaterThanOrEqual(2);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/^vt_step 40$/m);
  });
});
