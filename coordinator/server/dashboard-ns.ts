// The `/dashboard` socket.io namespace: on connect a snapshot + history + recent log, then live
// pushes from the event bus (see shared/protocol/dashboard.ts and docs/protocol.md). Status
// snapshots are throttled to about one per second while something changes; an operator action
// (pause, resume, kick) pushes one at once, so every open dashboard shows it without polling.
// Large clusters (more than PAGED_ABOVE connected workers, dashboard-workers.ts): snapshots carry
// no worker rows and no per-worker trust, `worker` change events are not sent; each dashboard
// gets the page of the workers table it asked for (`workers:query` -> `workers:page`) with the
// throttled status, so what one dashboard receives per second is bounded by a page, not by N.

import type { Server } from 'socket.io';
import { DASHBOARD_NAMESPACE } from '../../shared/protocol/messages.ts';
import type { EvalPoint, HistoryPoint, StatusSnapshot, WorkerRow, WorkersQuery } from '../../shared/protocol/dashboard.ts';
import { DEFAULT_QUERY, PAGED_ABOVE, parseWorkersQuery, workersPage } from './dashboard-workers.ts';
import type { EventBus } from './events.ts';
import type { WorkerView } from './workers.ts';

/** The worker records, for paging the table (coordinator.ts passes the registry's). */
export interface DashboardWorkers {
  all(): Iterable<WorkerView>;
  live(): number;
  row(w: WorkerView): WorkerRow;
}

export function attachDashboard(io: Server, bus: EventBus, status: () => StatusSnapshot, history: () => readonly HistoryPoint[], evals: () => EvalPoint[], table?: DashboardWorkers): () => void {
  const nsp = io.of(DASHBOARD_NAMESPACE);
  const paged = () => table !== undefined && table.live() > PAGED_ABOVE;
  /** Each dashboard's page of the workers table (large clusters). */
  const queries = new WeakMap<object, { q: WorkersQuery; last: number }>();
  /** A snapshot as pushed: without every row and every trust entry when the table is paged. */
  const pushed = (snap: StatusSnapshot): StatusSnapshot => {
    if (!paged()) return snap;
    const live = table!.live();
    const security = snap.security ? { ...snap.security, trust: {} } : undefined;
    return { ...snap, workers: [], workersPaged: { total: snap.workers.length, live }, ...(security ? { security } : {}) };
  };
  const sendPage = (s: { id: string; emit(e: string, p: unknown): unknown }, trust: Record<string, never> | NonNullable<StatusSnapshot['security']>['trust']) => {
    const st = queries.get(s) ?? { q: DEFAULT_QUERY, last: 0 };
    st.last = Date.now();
    queries.set(s, st);
    s.emit('workers:page', workersPage(table!.all(), (w) => table!.row(w), st.q, trust));
  };
  nsp.on('connection', (s) => {
    const snap = status();
    s.emit('snapshot', pushed(snap));
    if (paged()) sendPage(s, snap.security?.trust ?? {});
    s.emit('history', history());
    for (const e of evals()) s.emit('eval', e);
    for (const e of bus.recent.slice(-100)) s.emit('log', e);
    // Dashboards listen; the only thing they may send is which page of the workers table they
    // show (at most 5 a second are answered at once; others wait for the next push).
    s.on('workers:query', (raw: unknown) => {
      let q: WorkersQuery;
      try {
        q = parseWorkersQuery(raw);
      } catch (e) {
        s.emit('workers:error', { code: (e as { code?: string }).code ?? 'ERR_WORKERS_QUERY', message: (e as Error).message });
        return;
      }
      const st = queries.get(s) ?? { q, last: 0 };
      st.q = q;
      queries.set(s, st);
      if (table && Date.now() - st.last >= 200) sendPage(s, status().security?.trust ?? {});
    });
  });
  let dirty = false;
  const mark = () => {
    dirty = true;
  };
  const onStep = (p: HistoryPoint) => {
    nsp.emit('step', p);
    mark();
  };
  const onEval = (e: EvalPoint) => nsp.emit('eval', e);
  const onWorker = (c: Parameters<typeof nsp.emit>[1]) => {
    if (!paged()) nsp.emit('worker', c);
    mark();
  };
  const onLog = (e: unknown) => nsp.emit('log', e);
  bus.on('step', onStep);
  bus.on('eval', onEval);
  bus.on('worker', onWorker);
  bus.on('log', onLog);
  bus.on('checkpoint', mark);
  bus.on('preference', mark);
  const push = () => {
    if (nsp.sockets.size === 0) return;
    dirty = false;
    if (!paged()) return void nsp.emit('status', status());
    const snap = status();
    nsp.emit('status', pushed(snap));
    const trust = snap.security?.trust ?? {};
    for (const s of nsp.sockets.values()) sendPage(s, trust);
  };
  // Rare and token-gated, so unthrottled: a paused run with no busy worker changes nothing else
  // that would mark the status dirty.
  const onAdmin = () => push();
  bus.on('admin', onAdmin);
  const timer = setInterval(() => {
    if (dirty) push();
  }, 1000);
  timer.unref();
  return () => {
    clearInterval(timer);
    bus.off('step', onStep);
    bus.off('eval', onEval);
    bus.off('worker', onWorker);
    bus.off('log', onLog);
    bus.off('checkpoint', mark);
    bus.off('preference', mark);
    bus.off('admin', onAdmin);
  };
}
