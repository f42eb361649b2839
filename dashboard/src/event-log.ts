// The event log: joins, leaves, rejections (with their named codes), checkpoints, admin actions.
// Newest first, capped, text only.

import { el } from './dom.ts';
import type { EventView } from './view.ts';

export class EventLog {
  private readonly seen = new Set<string>();

  constructor(
    private readonly list: HTMLOListElement,
    private readonly max = 200,
  ) {}

  /** Events are de-duplicated by (time, kind, worker, code, message): the initial snapshot and pushes may overlap. */
  add(events: EventView[]): void {
    for (const e of events) {
      const key = `${e.time}|${e.kind}|${e.workerId}|${e.code}|${e.message}`;
      if (this.seen.has(key)) continue;
      this.seen.add(key);
      const time = e.time === null ? '' : new Date(e.time).toLocaleTimeString();
      const li = el(
        'li',
        { className: `ev ev-${e.kind.replace(/[^a-z0-9-]/gi, '')}`, testid: 'event', attrs: { 'data-kind': e.kind } },
        el('time', {}, time),
        el('span', { className: 'ev-kind' }, e.kind),
        e.code ? el('code', { className: 'ev-code' }, e.code) : null,
        e.workerId ? el('span', { className: 'ev-worker' }, e.workerId) : null,
        el('span', { className: 'ev-msg' }, e.message),
      );
      this.list.insertBefore(li, this.list.firstChild);
    }
    while (this.list.children.length > this.max) this.list.lastElementChild?.remove();
  }
}
