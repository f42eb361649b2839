// The Cluster panel (--redis, docs/scale.md): which coordinator processes share the run, which one
// leads (and its fencing epoch), how many workers each holds, and which one this dashboard is
// talking to, from StatusSnapshot.cluster. clusterView() is pure (unit-tested); renderCluster()
// writes text nodes only (dom.ts; strict CSP). The panel is created on first use, before the
// workers table, and hidden on a single coordinator.

import { byId, clear, el, setText } from './dom.ts';
import { formatInt } from './format.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';

export interface ClusterRow {
  id: string;
  url: string;
  role: 'leader' | 'gateway';
  workers: string;
  /** The process serving this dashboard. */
  self: boolean;
}

export interface ClusterView {
  /** "run demo · leader p-8081-ab12 (epoch 3) · 3 processes · 12 workers" */
  summary: string;
  /** Shown when something is wrong (no leader, Redis unreachable), else ''. */
  warning: string;
  rows: ClusterRow[];
}

const text = (v: unknown, max = 120): string => (typeof v === 'string' ? v.slice(0, max) : '');

/** The panel's content; null without a cluster block (one coordinator). Malformed rows are skipped. */
export function clusterView(s: Pick<StatusSnapshot, 'cluster'>): ClusterView | null {
  const c = s.cluster;
  if (!c || typeof c !== 'object' || !Array.isArray(c.processes)) return null;
  const rows: ClusterRow[] = [];
  let workers = 0;
  for (const p of c.processes) {
    if (!p || typeof p.id !== 'string') continue;
    const n = Number.isInteger(p.workers) && p.workers >= 0 ? p.workers : 0;
    workers += n;
    rows.push({ id: text(p.id, 64), url: text(p.url, 200), role: p.role === 'leader' ? 'leader' : 'gateway', workers: formatInt(n), self: p.id === c.self });
  }
  const leader = typeof c.leader === 'string' ? text(c.leader, 64) : null;
  const epoch = Number.isInteger(c.epoch) && c.epoch > 0 ? ` (epoch ${c.epoch})` : '';
  const summary = [`run ${text(c.run, 64)}`, leader ? `leader ${leader}${epoch}` : 'no leader',
    `${rows.length} process${rows.length === 1 ? '' : 'es'}`, `${formatInt(workers)} worker${workers === 1 ? '' : 's'}`].join(' · ');
  const warning = c.redis === false
    ? 'This process cannot reach Redis: the view is its last one, and nobody can lead until Redis is back (training waits).'
    : leader ? '' : 'No process holds the leader lease right now: training waits until one takes it over from the newest checkpoint.';
  return { summary, warning, rows };
}

/** Fill (creating it once, before the workers table's panel) the Cluster panel; hidden without a cluster. */
export function renderCluster(v: ClusterView | null): void {
  let panel = document.getElementById('cluster');
  if (!panel) {
    if (!v) return;
    panel = el('section', { id: 'cluster', className: 'panel', testid: 'cluster' },
      el('h2', {}, 'Cluster'),
      el('p', { className: 'note' }, 'Coordinator processes sharing this run through Redis. The leader trains and checkpoints; every process takes workers and sends the leader one partial per slice of a step.'),
      el('p', { id: 'cluster-summary', testid: 'cluster-summary' }),
      el('p', { id: 'cluster-warning', testid: 'cluster-warning' }),
      el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'process'), el('th', {}, 'role'), el('th', {}, 'workers'), el('th', {}, 'address'))),
        el('tbody', { id: 'cluster-body' })));
    byId('workers-body').closest('section')!.before(panel);
  }
  panel.hidden = v === null;
  if (!v) return;
  setText(byId('cluster-summary'), v.summary);
  const warn = byId('cluster-warning');
  setText(warn, v.warning);
  warn.hidden = v.warning === '';
  const body = byId('cluster-body');
  clear(body);
  for (const r of v.rows) {
    body.appendChild(el('tr', { attrs: { 'data-process-id': r.id, 'data-role': r.role } },
      el('td', {}, r.id, r.self ? ' (this one)' : ''), el('td', {}, r.role), el('td', {}, r.workers), el('td', {}, r.url)));
  }
}
