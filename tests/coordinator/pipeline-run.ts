// Shared by the pipeline equivalence tests: one coordinator (tiny preset, real sockets) with either
// three stage workers (1 MiB caps: one 3-stage pipeline), optionally a replica beside them, or one
// unlimited replica; the product's worker loop (WorkerClient) on the CPU reference backends.
import { afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { until } from './test-worker.ts';

export const G = 12;
/** 1 MiB: too small for the tiny model (2 MB at 20 B/param); three of them make a 3-stage pipeline. */
const STAGE_CAP = 2 ** 20;
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

export async function run(o: {
  stages: boolean; steps: number; activations: 'fp32' | 'fp16' | 'int8'; batch?: number; replicaToo?: boolean; lr?: number;
  /** More coordinator options (e.g. --objective dpo and its data); they win over the defaults here. */
  extra?: Record<string, unknown>;
  /** Memory cap of each stage worker (default 1 MiB). */
  stageCap?: number;
}) {
  const batch = o.batch ?? G;
  const dir = mkdtempSync(join(tmpdir(), 'coord-pipe-eq-'));
  const c: CoordinatorHandle = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: batch, maxSteps: o.steps, lr: o.lr ?? 3e-3, warmupSteps: 2,
    evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0, activations: o.activations,
    maxMicroBatch: o.stages ? 64 : batch, ...o.extra,
  });
  const params: Float32Array[] = [];
  c.bus.on('step', () => params.push(new Float32Array(c.trainer.params)));
  const cap = o.stageCap ?? STAGE_CAP;
  const caps = o.stages ? [cap, cap, cap, ...(o.replicaToo ? [undefined] : [])] : [undefined];
  /** Steps each worker was acknowledged for (its audit trace). */
  const acked = caps.map(() => new Set<number>());
  const ws = caps.map((cap, i) => new WorkerClient({
    url: c.url, name: `w${i}`, userCapBytes: cap, seed: i + 1, log: () => undefined,
    trace: (e) => void (e.ev === 'ack' && acked[i].add(e.step)),
    host: createCpuHost({ description: 'test cpu', probedBytes: cap ?? 2 ** 30 }),
  }));
  cleanups.push(async () => {
    for (const w of ws) await w.stop('test over');
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (const w of ws) await w.start();
  await until(() => c.trainer.step >= o.steps, 50_000, `${o.steps} steps (${o.stages ? 'pipeline' : 'replica'})`);
  return { c, losses: c.trainer.history.map((h) => h.loss), params, ws, acked, status: c.ctx.status() };
}

export function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d / n);
}

