// The DiLoCo panel (--mode diloco, docs/diloco.md): mode, round, H, bytes on the wire per round and
// per token, compression ratio and each worker's progress in the running round, from
// StatusSnapshot (mode, round, wire, diloco). dilocoView() is pure (unit-tested); renderDiloco()
// writes text nodes only (dom.ts; strict CSP: no innerHTML, no inline style). The panel is created
// on first use after the Security panel and hidden in sync mode.

import { byId, clear, el, setText } from './dom.ts';
import { formatBytes, formatInt } from './format.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';

export interface DilocoView {
  mode: string;
  round: string;
  innerSteps: string;
  compress: string;
  outer: string;
  bytesPerRound: string;
  bytesPerToken: string;
  compressionRatio: string;
  owed: string;
  /** One line per lease of the running round. */
  workers: Array<{ workerId: string; text: string; done: boolean }>;
}

/** The panel's text; null in sync mode (or from a coordinator that reports no diloco data). */
export function dilocoView(s: Pick<StatusSnapshot, 'mode' | 'round' | 'wire' | 'diloco'>): DilocoView | null {
  const d = s.diloco;
  if (s.mode !== 'diloco' || !d) return null;
  const rounds = s.round ?? 0;
  const wire = s.wire ? s.wire.bytesIn + s.wire.bytesOut : null;
  const r = d.running;
  return {
    mode: 'diloco',
    round: r ? `${formatInt(r.round)} running (${r.leases.filter((l) => l.done).length}/${r.leases.length} deltas in, quorum ${r.quorum})` : `${formatInt(rounds)} done`,
    innerSteps: formatInt(d.innerSteps),
    compress: d.compress,
    outer: `lr ${d.outerLr}, momentum ${d.outerMomentum}`,
    bytesPerRound: wire === null || rounds === 0 ? '—' : `${formatBytes(wire / rounds)} (in + out)`,
    bytesPerToken: d.bytesPerToken === null ? '—' : `${d.bytesPerToken.toFixed(1)} B`,
    compressionRatio: d.compressionRatio === null ? '—' : `${d.compressionRatio.toFixed(1)}x`,
    owed: formatInt(d.owed),
    workers: r ? r.leases.map((l) => ({ workerId: l.workerId, done: l.done, text: `${l.workerId}: H ${l.H}, ${formatInt(l.rows)} rows, ${l.done ? 'delta in' : 'training'}` })) : [],
  };
}

const FIELDS: Array<[keyof Omit<DilocoView, 'workers'>, string]> = [
  ['mode', 'Mode'], ['round', 'Round'], ['innerSteps', 'Inner steps H'], ['compress', 'Compression'], ['outer', 'Outer step'],
  ['bytesPerRound', 'Wire per round'], ['bytesPerToken', 'Wire per token'], ['compressionRatio', 'Compression ratio'], ['owed', 'Rows owed'],
];

/** Fill (creating it once, after #security) the DiLoCo panel. */
export function renderDiloco(v: DilocoView | null): void {
  let panel = document.getElementById('diloco');
  if (!panel) {
    if (!v) return;
    panel = el('section', { id: 'diloco', className: 'panel', testid: 'diloco' },
      el('h2', {}, 'DiLoCo rounds'),
      el('dl', { id: 'diloco-fields' }, ...FIELDS.flatMap(([k, label]) => [el('dt', {}, label), el('dd', { id: `diloco-${k}`, testid: `diloco-${k}` })])),
      el('ul', { id: 'diloco-workers', testid: 'diloco-workers' }));
    byId('security').after(panel);
  }
  panel.hidden = v === null;
  if (!v) return;
  for (const [k] of FIELDS) setText(byId(`diloco-${k}`), v[k]);
  const list = byId('diloco-workers');
  clear(list);
  if (v.workers.length === 0) list.appendChild(el('li', { className: 'empty' }, 'No round running.'));
  for (const w of v.workers) list.appendChild(el('li', { testid: 'diloco-worker', attrs: { 'data-done': String(w.done) } }, w.text));
}
