// The Security panel: what the coordinator's defences (coordinator/security, docs/hardening.md)
// report in StatusSnapshot.security: verification checks and mismatches, robust-aggregation
// memory, counters, rejections by code and the bans with their reasons. Ban reasons and ids are
// coordinator text that can quote worker input: rendered through dom.ts (text nodes only).

import { byId, clear, el, setText } from './dom.ts';
import { formatBytes, formatInt } from './format.ts';
import type { SecurityView } from './view.ts';

const intOr = (n: number | null): string => (n === null ? '—' : formatInt(n));
const pct = (n: number | null): string => (n === null ? '—' : `${+(n * 100).toFixed(2)}%`);

export function renderSecurity(v: SecurityView | null): void {
  const panel = byId('security');
  panel.dataset.state = v ? 'on' : 'absent';
  byId('sec-absent').hidden = v !== null;
  byId('sec-body').hidden = v === null;
  if (!v) return;
  setText(byId('sec-aggregate'), v.aggregate || '—');
  setText(byId('sec-verify-rate'), v.verifyRate === null ? '—'
    : v.verifyRate === 0 ? 'off' : `${pct(v.verifyRate)} (tolerance ${pct(v.verifyTolerance)})`);
  setText(byId('sec-verified'), intOr(v.verified));
  setText(byId('sec-mismatches'), intOr(v.mismatches));
  setText(byId('sec-verify-ms'), v.verifyMs === null ? '—' : `${formatInt(v.verifyMs)} ms`);
  setText(byId('sec-held'), v.heldGradientBytes === null ? '—' : formatBytes(v.heldGradientBytes));
  setText(byId('sec-ban-count'), formatInt(v.bans.length));
  setText(byId('sec-rejects'), v.rejects || 'none');
  setText(byId('sec-counters'), v.counters || 'none');
  const list = byId('sec-bans');
  clear(list);
  if (v.bans.length === 0) {
    list.appendChild(el('li', { className: 'empty', testid: 'bans-empty' }, 'No worker banned.'));
    return;
  }
  for (const b of v.bans) {
    const time = el('time', {}, b.at === null ? '' : new Date(b.at).toLocaleTimeString());
    if (b.at !== null) time.setAttribute('datetime', new Date(b.at).toISOString());
    list.appendChild(el('li', { testid: 'ban', attrs: { 'data-worker-id': b.id } },
      time,
      el('span', { className: 'ban-id', testid: 'ban-id' }, b.id),
      el('span', { className: 'ban-reason', testid: 'ban-reason' }, b.reason || '(no reason given)'),
    ));
  }
}
