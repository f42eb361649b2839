// Security per stage (issue 12): the coordinator re-computes a pipeline's share on its CPU from the
// stage inputs it relayed. A stage worker that scales its gradient (`--fault scale:8`, the product
// worker's fault seam) is named by the re-computation: its shares are refused (VERIFY_FAILED, seen
// by the worker), never acknowledged, and after two mismatches it is banned; the waiting honest
// worker takes its blocks and training finishes with every sample once. Real sockets, the product
// worker loop (WorkerClient) on the CPU backends.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import type { FaultSpec } from '../../worker-web/client/faults.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { until } from './test-worker.ts';

const STEPS = 6;
const G = 8;
const dir = mkdtempSync(join(tmpdir(), 'coord-pipe-verify-'));
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

describe('pipeline verification', () => {
  it('a stage that lies about its gradient is caught by re-computation, banned and replaced', async () => {
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, globalBatch: G, maxSteps: STEPS, lr: 3e-3, warmupSteps: 2,
      evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 1, activations: 'fp16',
    });
    cleanups.push(() => c.close());
    const start = (name: string, fault: FaultSpec = { kind: 'none' }) => {
      const w = new WorkerClient({
        url: c.url, name, userCapBytes: 2 ** 20, seed: name.length, fault, log: () => undefined,
        host: createCpuHost({ description: 'test cpu', probedBytes: 2 ** 20 }),
      });
      cleanups.push(() => w.stop('test over'));
      return w;
    };
    const liar = start('liar', { kind: 'scale', factor: 8 });
    const honest = [start('h1'), start('h2')];
    for (const w of [liar, ...honest]) await w.start();
    await until(() => (c.ctx.status().pipelines ?? []).length === 1, 30_000, 'a pipeline of the liar and two honest workers');
    const liarLayers = c.ctx.status().workers.find((w) => w.name === 'liar')!.layers;
    const spare = start('spare');
    await spare.start();
    await until(() => c.trainer.step >= STEPS, 50_000, `${STEPS} steps`);

    // From the workers' side: the liar's shares were refused by re-computation and never acknowledged.
    expect(liar.stats.rejectedByCode.VERIFY_FAILED ?? 0).toBeGreaterThanOrEqual(1);
    expect(liar.stats.accepted).toBe(0);
    expect(liar.stats.rejectedByCode.BANNED ?? 0).toBe(1);
    expect(spare.stats.accepted).toBeGreaterThan(0);
    // The spare holds the liar's blocks; the liar is banned.
    const s = c.ctx.status();
    const spareRow = s.workers.find((w) => w.name === 'spare')!;
    expect(spareRow.role).toBe('stage');
    expect(spareRow.layers).toEqual(liarLayers);
    expect(s.security?.banned.map((b) => b.id)).toContain(s.workers.find((w) => w.name === 'liar')!.id);
    // Honest workers were never refused; every sample was trained once.
    for (const w of [...honest, spare]) expect(Object.keys(w.stats.rejectedByCode)).toEqual([]);
    expect(s.samplesTrained).toBe(STEPS * G);
    expect(s.accounting.doubled).toBe(0);
  }, 60_000);
});
