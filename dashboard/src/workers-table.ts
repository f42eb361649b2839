// The workers table. Rows are keyed by worker id and rebuilt from text only (textContent), so an
// adapter string or name such as `<img src=x onerror=...>` is shown literally, never parsed.

import { el, clear } from './dom.ts';
import { formatAgo, formatBytes, formatInt, formatRate } from './format.ts';
import type { WorkerView } from './view.ts';

const DEPARTED = ['left', 'dead', 'kicked'];
export const MAX_DEPARTED_ROWS = 50;

export const COLUMNS = ['id', 'name', 'backend', 'adapter', 'role', 'state', 'budget', 'tasks', 'tps', 'rejected', 'trust', 'lastSeen'] as const;
export type Column = (typeof COLUMNS)[number];

function cellText(w: WorkerView, c: Column, now: number): string {
  switch (c) {
    case 'id': return w.id;
    case 'name': return w.name || '—';
    case 'backend': return w.backend || '—';
    case 'adapter': return (w.adapter || '—') + (w.software ? ' (software)' : '');
    case 'role': return w.role || '—';
    case 'state': return w.state || '—';
    case 'budget': return w.budgetBytes === null ? '—' : formatBytes(w.budgetBytes);
    case 'tasks': return w.tasksDone === null ? '—' : formatInt(w.tasksDone);
    case 'tps': return formatRate(w.tokensPerSec);
    case 'rejected': return w.rejected === null ? '—' : formatInt(w.rejected) + (w.rejectedCodes ? ` (${w.rejectedCodes})` : '');
    case 'trust': return trustText(w);
    case 'lastSeen': return formatAgo(w.lastSeen, now);
  }
}

/** "banned", "87%" (reputation from the security layer), or "—" when none is reported. */
export function trustText(w: WorkerView): string {
  if (!w.trust) return '—';
  if (w.trust.banned) return 'banned';
  return `${Math.round(w.trust.trust * 100)}%`;
}

function trustTitle(w: WorkerView): string {
  const t = w.trust;
  if (!t) return '';
  return `verified ok ${t.verifiedOk}, mismatches ${t.mismatches}, penalty ${t.penalty}, ` +
    `checked with probability ${Math.round(t.verifyProbability * 100)}%`;
}

export interface WorkersTableOptions {
  /** When set, each row gets a Kick button that calls it (admin unlocked). */
  onKick?: (workerId: string) => void;
  /** Draw the rows in the order given (already sorted and paged: workers-pager.ts). */
  keepOrder?: boolean;
}

export function renderWorkers(tbody: HTMLTableSectionElement, workers: WorkerView[], opts: WorkersTableOptions = {}, now = Date.now()): void {
  clear(tbody);
  if (workers.length === 0) {
    const td = el('td', { className: 'empty' }, 'No workers connected. Share the worker link below to add one.');
    td.colSpan = COLUMNS.length + 1;
    tbody.appendChild(el('tr', { testid: 'workers-empty' }, td));
    return;
  }
  // Live workers first; departed ones (left, dead, kicked) after them, newest-seen first, capped so
  // a long run with heavy churn keeps a readable table.
  const gone = (w: WorkerView): boolean => DEPARTED.includes(w.state);
  const live = workers.filter((w) => !gone(w)).sort((a, b) => a.id.localeCompare(b.id));
  const departed = workers.filter(gone).sort((a, b) => (b.lastSeen ?? 0) - (a.lastSeen ?? 0)).slice(0, MAX_DEPARTED_ROWS);
  for (const w of opts.keepOrder ? workers : [...live, ...departed]) {
    const tr = el('tr', { testid: 'worker-row', attrs: { 'data-worker-id': w.id } });
    if (w.software) tr.classList.add('software');
    if (gone(w)) tr.classList.add('departed');
    if (w.trust?.banned) tr.classList.add('banned');
    for (const c of COLUMNS) {
      const td = el('td', { attrs: { 'data-col': c } }, cellText(w, c, now));
      if (c === 'role' && w.reason) td.title = w.reason;
      if (c === 'rejected' && w.rejectedCodes) td.title = w.rejectedCodes;
      if (c === 'trust' && w.trust) {
        td.title = trustTitle(w);
        td.dataset.trust = w.trust.banned ? 'banned' : String(w.trust.trust);
      }
      tr.appendChild(td);
    }
    const actions = el('td', { className: 'actions', attrs: { 'data-col': 'actions' } });
    if (opts.onKick) {
      const b = el('button', { className: 'danger small', testid: 'kick', attrs: { type: 'button', 'data-worker-id': w.id } }, 'Kick');
      const kick = opts.onKick;
      b.addEventListener('click', () => kick(w.id));
      actions.appendChild(b);
    }
    tr.appendChild(actions);
    tbody.appendChild(tr);
  }
}
