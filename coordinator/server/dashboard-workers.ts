// The workers table for dashboards of large clusters. Up to PAGED_ABOVE connected workers, every
// dashboard gets every row (in status snapshots) and every change (`worker` events), as before.
// Above it that is 1,000 rows a second and thousands of change events a step, to each dashboard:
// instead each dashboard asks for ONE page (`workers:query`: page, size <= 100, sort, filter) and
// is pushed that page with the throttled status (at most ~1/s), sorted and filtered here.

import type { WorkerRow, WorkersPage, WorkersQuery, WorkerSortKey } from '../../shared/protocol/dashboard.ts';
import { WORKER_SORT_KEYS } from '../../shared/protocol/dashboard.ts';
import type { WorkerView } from './workers.ts';

/** More connected workers than this: the table is paged (see the header). */
export const PAGED_ABOVE = 100;
export const PAGE_MAX = 100;
export const DEFAULT_QUERY: WorkersQuery = { page: 0, size: 50, sort: 'id', dir: 1, filter: '' };

export class WorkersQueryError extends Error {
  readonly code = 'ERR_WORKERS_QUERY';
}

/** A dashboard's `workers:query`, checked: a named error for anything out of range. */
export function parseWorkersQuery(x: unknown): WorkersQuery {
  if (typeof x !== 'object' || x === null) throw new WorkersQueryError('workers:query: expected an object {page, size, sort, dir, filter}');
  const o = x as Record<string, unknown>;
  const q = { ...DEFAULT_QUERY };
  if (o.page !== undefined) {
    if (!Number.isInteger(o.page) || (o.page as number) < 0 || (o.page as number) > 1e6) throw new WorkersQueryError('workers:query: page must be an integer >= 0');
    q.page = o.page as number;
  }
  if (o.size !== undefined) {
    if (!Number.isInteger(o.size) || (o.size as number) < 1 || (o.size as number) > PAGE_MAX) throw new WorkersQueryError(`workers:query: size must be an integer in [1, ${PAGE_MAX}]`);
    q.size = o.size as number;
  }
  if (o.sort !== undefined) {
    if (!(WORKER_SORT_KEYS as readonly unknown[]).includes(o.sort)) throw new WorkersQueryError(`workers:query: sort must be one of ${WORKER_SORT_KEYS.join(', ')}`);
    q.sort = o.sort as WorkerSortKey;
  }
  if (o.dir !== undefined) {
    if (o.dir !== 1 && o.dir !== -1) throw new WorkersQueryError('workers:query: dir must be 1 or -1');
    q.dir = o.dir;
  }
  if (o.filter !== undefined) {
    if (typeof o.filter !== 'string' || o.filter.length > 100) throw new WorkersQueryError('workers:query: filter must be a string of at most 100 characters');
    q.filter = o.filter;
  }
  return q;
}

const key: Record<WorkerSortKey, (w: WorkerView) => string | number> = {
  id: (w) => w.id,
  name: (w) => w.hello.name ?? '',
  state: (w) => w.state,
  backend: (w) => w.hello.backend,
  tasks: (w) => w.tasksDone,
  tps: (w) => w.tokensPerSec,
  rejected: (w) => w.rejected,
  lastSeen: (w) => w.lastSeen,
};

function matches(w: WorkerView, f: string): boolean {
  const a = w.hello.adapter;
  return [w.id, w.hello.name ?? '', w.hello.backend, w.state, w.plan.role, a.description, a.vendor, a.architecture].some((s) => s.toLowerCase().includes(f));
}

/** One page of `all` for `q` (O(N log N) for the sort; rows built for the page only). */
export function workersPage(all: Iterable<WorkerView>, row: (w: WorkerView) => WorkerRow, q: WorkersQuery, trust: WorkersPage['trust'] = {}): WorkersPage {
  const list = [...all];
  const states: Record<string, number> = {};
  for (const w of list) states[w.state] = (states[w.state] ?? 0) + 1;
  const f = q.filter.trim().toLowerCase();
  const hit = f ? list.filter((w) => matches(w, f)) : list;
  const k = key[q.sort];
  hit.sort((a, b) => {
    const x = k(a);
    const y = k(b);
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return (c || a.id.localeCompare(b.id)) * q.dir;
  });
  const rows = hit.slice(q.page * q.size, (q.page + 1) * q.size).map(row);
  const pageTrust: WorkersPage['trust'] = {};
  for (const r of rows) if (trust[r.id]) pageTrust[r.id] = trust[r.id];
  return { query: q, total: list.length, matched: hit.length, states, rows, trust: pageTrust };
}
