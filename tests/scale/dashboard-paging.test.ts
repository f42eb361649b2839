// The dashboard with many workers: above PAGED_ABOVE connected workers a dashboard gets no
// per-worker change events and no full row list; it gets the page of the workers table it asks
// for (sorted, filtered, at most 100 rows), and a bad query is answered with a named error.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { PAGED_ABOVE } from '../../coordinator/server/dashboard-workers.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { DASHBOARD_NAMESPACE, PROTOCOL_VERSION, type HelloMsg } from '../../shared/protocol/messages.ts';
import type { StatusSnapshot, WorkerChange, WorkersPage } from '../../shared/protocol/dashboard.ts';
import { until } from '../coordinator/test-worker.ts';

const dir = mkdtempSync(join(tmpdir(), 'dash-paging-'));
const sockets: Socket[] = [];
afterAll(() => {
  for (const s of sockets) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A worker that says hello and heartbeats (training never starts: --min-workers is out of reach). */
function joiner(url: string, i: number, welcomed: Set<number>): Socket {
  const s = io(url, { parser: msgpackParser, transports: ['websocket'], forceNew: true, reconnection: false });
  s.on('connect', () => {
    const hello: HelloMsg = {
      protocol: PROTOCOL_VERSION, backend: 'cpu', adapter: { vendor: 'test', architecture: 'cpu', description: `pager ${i}`, isSoftware: true },
      limits: {}, userCapBytes: 2 ** 31, name: `pager-${String(i).padStart(3, '0')}`, agent: 'test',
    };
    s.emit('hello', hello);
  });
  s.on('welcome', () => welcomed.add(i));
  sockets.push(s);
  return s;
}

describe('dashboard paging', () => {
  it(`pages the workers table above ${PAGED_ABOVE} workers; no per-worker pushes`, async () => {
    const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, minWorkers: 1000, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0 });
    try {
      const N = PAGED_ABOVE + 20;
      const welcomed = new Set<number>();
      for (let i = 0; i < N; i++) joiner(c.url, i, welcomed);
      await until(() => welcomed.size === N, 60_000, `${N} workers welcomed`);
      const got = { snapshot: [] as StatusSnapshot[], status: [] as StatusSnapshot[], worker: [] as WorkerChange[], page: [] as WorkersPage[], error: [] as Array<{ code: string; message: string }> };
      const d = io(c.url + DASHBOARD_NAMESPACE, { parser: msgpackParser, transports: ['websocket'], forceNew: true, reconnection: false });
      sockets.push(d);
      d.on('snapshot', (m: StatusSnapshot) => got.snapshot.push(m));
      d.on('status', (m: StatusSnapshot) => got.status.push(m));
      d.on('worker', (m: WorkerChange) => got.worker.push(m));
      d.on('workers:page', (m: WorkersPage) => got.page.push(m));
      d.on('workers:error', (m: { code: string; message: string }) => got.error.push(m));
      await until(() => got.snapshot.length === 1 && got.page.length >= 1, 10_000, 'snapshot and first page');
      expect(got.snapshot[0].workers).toEqual([]);
      expect(got.snapshot[0].workersPaged).toEqual({ total: N, live: N });
      const first = got.page[0];
      expect(first.total).toBe(N);
      expect(first.rows.length).toBe(50);
      expect(first.rows.map((r) => r.id)).toEqual([...first.rows.map((r) => r.id)].sort((a, b) => a.localeCompare(b)));
      expect(first.states.waiting ?? 0).toBe(N);

      // Sorted by name, descending, filtered, 10 a page.
      d.emit('workers:query', { page: 0, size: 10, sort: 'name', dir: -1, filter: 'PAGER-01' });
      await until(() => got.page.some((p) => p.query.filter === 'PAGER-01'), 10_000, 'the filtered page');
      const p = got.page.find((x) => x.query.filter === 'PAGER-01')!;
      expect(p.matched).toBe(10); // pager-010 .. pager-019
      expect(p.rows.map((r) => r.name)).toEqual(Array.from({ length: 10 }, (_, i) => `pager-01${9 - i}`));

      d.emit('workers:query', { page: 0, size: 1000 });
      await until(() => got.error.length === 1, 10_000, 'a named error for a bad query');
      expect(got.error[0].code).toBe('ERR_WORKERS_QUERY');
      expect(got.error[0].message).toMatch(/size/);

      // Joins and leaves above the threshold are not pushed one by one.
      const more = new Set<number>();
      for (let i = N; i < N + 5; i++) joiner(c.url, i, more);
      await until(() => more.size === 5, 20_000, '5 more workers');
      sockets.slice(0, 3).forEach((s) => s.close());
      await until(() => got.status.some((s) => s.workersPaged?.live === N + 2), 20_000, 'a status with the new count');
      expect(got.worker).toEqual([]);
      expect(got.status.every((s) => s.workers.length === 0 && Object.keys(s.security?.trust ?? {}).length === 0)).toBe(true);
    } finally {
      await c.close();
    }
  });
});
