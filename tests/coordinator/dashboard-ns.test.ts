// The /dashboard namespace pushes what the dashboard draws: snapshot + history on connect, then
// worker joins, steps, throttled status snapshots, evals and log entries, over the msgpack parser.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { DASHBOARD_NAMESPACE } from '../../shared/protocol/messages.ts';
import type { EvalPoint, HistoryPoint, LogEntry, StatusSnapshot, WorkerChange } from '../../shared/protocol/dashboard.ts';
import { startTestWorker, until } from './test-worker.ts';

const dir = mkdtempSync(join(tmpdir(), 'coord-dash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('dashboard namespace', () => {
  it('pushes snapshot, history, worker changes, steps, status, evals and log entries', async () => {
    const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: 8, maxSteps: 4, evalEvery: 2, evalSamples: 4,
      checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0 });
    const got = { snapshot: [] as StatusSnapshot[], history: [] as HistoryPoint[][], status: [] as StatusSnapshot[], step: [] as HistoryPoint[], eval: [] as EvalPoint[], worker: [] as WorkerChange[], log: [] as LogEntry[] };
    const d = io(c.url + DASHBOARD_NAMESPACE, { parser: msgpackParser, transports: ['websocket'], forceNew: true, reconnection: false });
    for (const k of Object.keys(got) as Array<keyof typeof got>) d.on(k, (m: unknown) => void (got[k] as unknown[]).push(m));
    const w = startTestWorker(c.url, { name: 'dash-w' });
    try {
      await until(() => got.snapshot.length === 1 && got.history.length === 1, 5000, 'snapshot and history');
      expect(got.snapshot[0]).toMatchObject({ step: 0, model: { preset: 'tiny' } });
      await until(() => c.trainer.step >= 4 && got.step.length >= 4 && got.eval.length >= 2 && got.status.length >= 1, 30_000, 'pushes');
      expect(got.step.map((p) => p.step)).toEqual([0, 1, 2, 3]);
      expect(got.eval.map((e) => e.step)).toEqual([1, 3]);
      expect(got.worker.find((x) => x.op === 'join')?.worker).toMatchObject({ name: 'dash-w', backend: 'cpu', role: 'replica' });
      expect(got.log.some((e) => e.kind === 'join')).toBe(true);
      expect(got.log.some((e) => e.kind === 'eval')).toBe(true);
      expect(got.status.at(-1)!.workers.some((x) => x.name === 'dash-w')).toBe(true);
    } finally {
      w.close();
      d.close();
      await c.close();
    }
  });
});
