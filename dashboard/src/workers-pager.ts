// Paging, sorting and filtering of the workers table, so the page stays usable with 1,000 workers.
// Small clusters: every row is here (status snapshots, `worker` events) and is sorted, filtered
// and cut into pages locally. Large clusters (the coordinator marks snapshots `workersPaged`): the
// coordinator sends only the page asked for (`workers:query` -> `workers:page`, pushed ~1/s), so
// the page draws at most one page of rows whatever the cluster's size.

import type { WorkersPage, WorkersQuery, WorkerSortKey } from '../../shared/protocol/dashboard.ts';
import { WORKER_SORT_KEYS } from '../../shared/protocol/dashboard.ts';
import { el } from './dom.ts';
import type { WorkerView } from './view.ts';
import { MAX_DEPARTED_ROWS } from './workers-table.ts';

export const PAGE_SIZE = 50;

const SORT_LABEL: Record<WorkerSortKey, string> = {
  id: 'id', name: 'name', state: 'state', backend: 'backend', tasks: 'tasks', tps: 'tokens/s', rejected: 'rejected', lastSeen: 'last seen',
};

const sortValue: Record<WorkerSortKey, (w: WorkerView) => string | number> = {
  id: (w) => w.id,
  name: (w) => w.name,
  state: (w) => w.state,
  backend: (w) => w.backend,
  tasks: (w) => w.tasksDone ?? -1,
  tps: (w) => w.tokensPerSec ?? -1,
  rejected: (w) => w.rejected ?? -1,
  lastSeen: (w) => w.lastSeen ?? 0,
};

const DEPARTED = ['left', 'dead', 'kicked'];

/**
 * Filter, sort and cut one page of `views` (the coordinator does the same for paged clusters).
 * The default order (id, ascending) is the table's own: live workers by id, then departed ones,
 * newest first, at most MAX_DEPARTED_ROWS of them.
 */
export function pageLocally(views: WorkerView[], q: WorkersQuery): { rows: WorkerView[]; matched: number } {
  const f = q.filter.trim().toLowerCase();
  let hit = f ? views.filter((w) => [w.id, w.name, w.backend, w.state, w.role, w.adapter].some((s) => s.toLowerCase().includes(f))) : [...views];
  if (q.sort === 'id' && q.dir === 1) {
    const gone = (w: WorkerView) => DEPARTED.includes(w.state);
    const live = hit.filter((w) => !gone(w)).sort((a, b) => a.id.localeCompare(b.id));
    const departed = hit.filter(gone).sort((a, b) => (b.lastSeen ?? 0) - (a.lastSeen ?? 0)).slice(0, MAX_DEPARTED_ROWS);
    hit = [...live, ...departed];
    return { rows: hit.slice(q.page * q.size, (q.page + 1) * q.size), matched: hit.length };
  }
  const k = sortValue[q.sort];
  hit.sort((a, b) => {
    const x = k(a);
    const y = k(b);
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return (c || a.id.localeCompare(b.id)) * q.dir;
  });
  return { rows: hit.slice(q.page * q.size, (q.page + 1) * q.size), matched: hit.length };
}

export interface PagerOptions {
  /** Ask the coordinator for the page (paged clusters only). */
  send(q: WorkersQuery): void;
  /** The query changed: draw again. */
  onChange(): void;
}

export class WorkersPager {
  query: WorkersQuery = { page: 0, size: PAGE_SIZE, sort: 'id', dir: 1, filter: '' };
  /** The last page pushed by the coordinator; set while the cluster is paged. */
  remote: WorkersPage | null = null;
  paged = false;
  private readonly info: HTMLElement;
  private readonly prev: HTMLButtonElement;
  private readonly next: HTMLButtonElement;

  constructor(table: HTMLElement, private readonly o: PagerOptions) {
    const filter = el('input', { testid: 'workers-filter', attrs: { type: 'search', placeholder: 'filter: id, name, state, adapter…', 'aria-label': 'filter workers' } });
    const sort = el('select', { testid: 'workers-sort', attrs: { 'aria-label': 'sort workers by' } });
    for (const k of WORKER_SORT_KEYS) sort.appendChild(el('option', { attrs: { value: k } }, `sort: ${SORT_LABEL[k]}`));
    const dir = el('button', { className: 'small', testid: 'workers-dir', attrs: { type: 'button', title: 'ascending / descending' } }, '↑');
    this.prev = el('button', { className: 'small', testid: 'workers-prev', attrs: { type: 'button' } }, '‹ prev');
    this.next = el('button', { className: 'small', testid: 'workers-next', attrs: { type: 'button' } }, 'next ›');
    this.info = el('span', { className: 'muted', testid: 'workers-page-info' });
    let typing: ReturnType<typeof setTimeout> | undefined;
    filter.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.set({ filter: filter.value.slice(0, 100), page: 0 }), 250);
    });
    sort.addEventListener('change', () => this.set({ sort: sort.value as WorkerSortKey, page: 0 }));
    dir.addEventListener('click', () => {
      this.set({ dir: this.query.dir === 1 ? -1 : 1 });
      dir.textContent = this.query.dir === 1 ? '↑' : '↓';
    });
    this.prev.addEventListener('click', () => this.set({ page: Math.max(0, this.query.page - 1) }));
    this.next.addEventListener('click', () => this.set({ page: this.query.page + 1 }));
    const bar = el('div', { className: 'workers-pager', testid: 'workers-pager' }, filter, sort, dir, this.prev, this.next, this.info);
    (table.closest('.scroll') ?? table).before(bar);
  }

  private set(p: Partial<WorkersQuery>): void {
    this.query = { ...this.query, ...p };
    if (this.paged) this.o.send(this.query);
    this.o.onChange();
  }

  /** Rows to draw now: from the coordinator's page (paged) or cut from every row (small cluster). */
  rows(all: WorkerView[], pageViews: WorkerView[]): WorkerView[] {
    if (this.paged) {
      const matched = this.remote?.matched ?? 0;
      this.show(matched, this.remote?.total ?? 0);
      return pageViews;
    }
    let r = pageLocally(all, this.query);
    if (r.rows.length === 0 && this.query.page > 0 && r.matched > 0) {
      this.query = { ...this.query, page: Math.floor((r.matched - 1) / this.query.size) };
      r = pageLocally(all, this.query);
    }
    this.show(r.matched, all.length);
    return r.rows;
  }

  private show(matched: number, total: number): void {
    const from = matched === 0 ? 0 : this.query.page * this.query.size + 1;
    const to = Math.min(matched, (this.query.page + 1) * this.query.size);
    this.info.textContent = `${from}–${to} of ${matched}${matched !== total ? ` (filtered from ${total})` : ''}`;
    this.prev.disabled = this.query.page === 0;
    this.next.disabled = to >= matched;
  }
}
