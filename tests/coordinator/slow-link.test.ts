// Workers behind slow links (the Node worker's --link pacing): a socket whose parameter frame is
// still unread is held back from new work (bounded memory per connection), and nothing announces
// when it drains. The coordinator must look again by itself: two paced workers train 6 sync steps
// long before any lease could expire (a stall would wait for the 120 s lease to run out).
import { afterAll, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import { paceSocket, parseLink } from '../../worker-web/client/link.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { until } from './test-worker.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

it('paced workers keep getting work: no step waits for a lease to expire', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slow-link-'));
  const LEASE_MS = 120_000;
  const c = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
    adminToken: 'slow-link', globalBatch: 8, maxMicroBatch: 4, maxSteps: 6, minWorkers: 2, leaseMs: LEASE_MS, verifyRate: 0,
  });
  cleanups.push(async () => {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const link = parseLink('10mbit/50mbit');
  const workers = [0, 1].map((i) => new WorkerClient({
    url: c.url, name: `paced${i}`, host: createCpuHost({ description: 'paced cpu', probedBytes: 256 * 2 ** 20 }), seed: i + 1,
    log: () => undefined, wrapSocket: (s) => void paceSocket(s, link),
  }));
  for (const w of workers) {
    await w.start();
    cleanups.push(() => w.stop('test over'));
  }
  const t0 = Date.now();
  await until(() => c.trainer.finished, LEASE_MS / 2, '6 steps from paced workers');
  expect(Date.now() - t0).toBeLessThan(LEASE_MS / 2);
  // Both trained: each was acknowledged for work (counted by the workers).
  for (const w of workers) expect(w.stats.accepted).toBeGreaterThan(0);
}, 90_000);
