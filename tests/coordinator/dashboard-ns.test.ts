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
      // Built-in task: per-task exact match over the 4 evaluated pairs, and those pairs' answers (issue 14).
      for (const e of got.eval) {
        expect(e.tasks!.reduce((n, t) => n + t.total, 0)).toBe(4);
        expect(e.samples!.length).toBeGreaterThan(0);
        for (const x of e.samples!) expect(typeof x.output).toBe('string');
      }
      expect(got.status.at(-1)!.task).toMatchObject({ name: 'arith-rev(seed=1, answers=padded-reversed)', builtIn: true, answerNote: expect.stringContaining('units first') });
      expect(got.status.at(-1)!.task!.examplePrompts).toContain('12+34=');
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

  it('pushes a status snapshot on admin pause, resume and kick', async () => {
    // No worker at first: nothing else changes, so without the admin push no status would come.
    const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: join(dir, 'admin'), globalBatch: 8, evalEvery: 0,
      checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0, adminToken: 'dash-admin-token' });
    const admin = (path: string) => fetch(c.url + '/api/admin/' + path, { method: 'POST', headers: { authorization: 'Bearer dash-admin-token' } });
    const snapshots: StatusSnapshot[] = [];
    const statuses: StatusSnapshot[] = [];
    const d = io(c.url + DASHBOARD_NAMESPACE, { parser: msgpackParser, transports: ['websocket'], forceNew: true, reconnection: false });
    d.on('snapshot', (m: StatusSnapshot) => void snapshots.push(m));
    d.on('status', (m: StatusSnapshot) => void statuses.push(m));
    let w: ReturnType<typeof startTestWorker> | undefined;
    try {
      await until(() => snapshots.length === 1, 5000, 'snapshot');
      expect(snapshots[0].paused).toBe(false);
      expect((await admin('pause')).status).toBe(200);
      await until(() => statuses.some((s) => s.paused), 5000, 'a pushed status with paused: true');
      const afterPause = statuses.length;
      expect((await admin('resume')).status).toBe(200);
      await until(() => statuses.slice(afterPause).some((s) => !s.paused), 5000, 'a pushed status with paused: false');

      // Kick: paused again so the worker sits still, then kicked; the pushed status shows it.
      expect((await admin('pause')).status).toBe(200);
      w = startTestWorker(c.url, { name: 'to-kick' });
      await w.welcome;
      const id = w.id()!;
      await until(() => statuses.some((s) => s.workers.some((x) => x.id === id && x.state === 'paused')), 5000, 'the worker, paused');
      expect((await admin('kick/' + encodeURIComponent(id))).status).toBe(200);
      await until(() => statuses.some((s) => s.workers.some((x) => x.id === id && x.state === 'kicked')), 5000, 'a pushed status with the worker kicked');
      // A wrong token changes nothing and pushes nothing.
      const before = statuses.length;
      const denied = await fetch(c.url + '/api/admin/resume', { method: 'POST', headers: { authorization: 'Bearer wrong-token-xx' } });
      expect(denied.status).toBe(401);
      await new Promise((r) => setTimeout(r, 300));
      expect(statuses.slice(before).some((s) => !s.paused)).toBe(false);
    } finally {
      w?.close();
      d.close();
      await c.close();
    }
  });
});
