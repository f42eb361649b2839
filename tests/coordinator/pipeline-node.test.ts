// Issue 12's "done when": the default model (`--preset small`, ~1M params, 20.8 MB at 20 B/param)
// with three Node worker processes at `--memory 9MiB` (each too small to hold it) trains as one
// 3-stage pipeline and the loss falls. The workers are the product's `npm run worker` entry point
// (worker-web/node/main.ts) on the CPU backend; the pipeline and the roles are read from
// /api/status over HTTP, the losses from /api/history.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import type { HistoryPoint, StatusSnapshot } from '../../shared/protocol/dashboard.ts';
import { untilAsync } from './test-worker.ts';

const STEPS = 10;
const G = 8;
const procs: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'coord-pipe-node-'));
afterAll(() => {
  procs.forEach((p) => p.exitCode === null && p.signalCode === null && p.kill('SIGKILL'));
  rmSync(dir, { recursive: true, force: true });
});

describe('preset small on three 9 MiB Node workers', () => {
  it('forms one 3-stage pipeline and the loss falls', async () => {
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'small', runDir: dir, globalBatch: G, maxSteps: STEPS, lr: 1e-2, warmupSteps: 2,
      evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
    });
    try {
      for (const n of ['s1', 's2', 's3']) {
        procs.push(spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', c.url, '--backend', 'cpu', '--memory', '9MiB', '--name', n, '--quiet'],
          { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'] }));
      }
      const get = async <T>(path: string): Promise<T> => (await fetch(c.url + path)).json() as Promise<T>;
      await untilAsync(async () => (await get<StatusSnapshot>('/api/status')).step >= STEPS, 100_000, `${STEPS} steps`);
      const s = await get<StatusSnapshot>('/api/status');
      // Every worker is a stage; together they hold every block once, the ends hold wte.
      expect(s.workers.map((w) => w.role)).toEqual(['stage', 'stage', 'stage']);
      expect(s.pipelines).toHaveLength(1);
      const p = s.pipelines![0];
      expect(p.stages.map((x) => x.layers).flat()).toEqual([0, ...p.stages.slice(1).map((x) => x.layers[0]).flatMap((b) => [b, b]), 5]);
      expect(p.stages[0].embeddings && p.stages[2].head).toBe(true);
      expect(s.workers.every((w) => w.pipeline === p.id && w.tasksDone > 0)).toBe(true);
      expect(p.bubble).toBeGreaterThanOrEqual(0);
      expect(p.bubble).toBeLessThan(1);
      expect(p.tokensPerSec).toBeGreaterThan(0);
      // The loss falls: the last three steps' mean is clearly below the first step's (the untrained
      // model's, ~ln 257); single steps of 8 rows are noisy, so no step-to-step order is asked.
      const loss = (await get<{ points: HistoryPoint[] }>('/api/history')).points.map((x) => x.loss);
      expect(loss.length).toBeGreaterThanOrEqual(STEPS);
      const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
      expect(loss[0]).toBeGreaterThan(5);
      expect(mean(loss.slice(-3)), loss.map((x) => x.toFixed(2)).join(' ')).toBeLessThan(0.85 * loss[0]);
      expect(s.accounting.doubled).toBe(0);
      expect(s.samplesTrained).toBe(STEPS * G);
    } finally {
      await c.close();
    }
  }, 120_000);
});
