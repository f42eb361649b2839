// The workers table's local paging (small clusters): filter, sort, pages; the default order is
// the table's own (live by id, then departed newest first).
import { describe, expect, it } from 'vitest';
import { pageLocally } from '../../dashboard/src/workers-pager.ts';
import type { WorkerView } from '../../dashboard/src/view.ts';

const w = (id: string, state: string, tps: number, lastSeen = 0): WorkerView => ({
  id, name: `n-${id}`, backend: 'cpu', adapter: 'test', software: false, state, role: 'replica', budgetBytes: null,
  tasksDone: 1, tokensPerSec: tps, rejected: 0, rejectedCodes: '', lastSeen, reason: '', breakdown: null, trust: null,
});

describe('workers pager (local)', () => {
  const views = [w('w3', 'idle', 5), w('w1', 'left', 9, 100), w('w2', 'computing', 7), w('w4', 'dead', 1, 200), w('w10', 'idle', 3)];
  it('default order: live by id, then departed newest first', () => {
    const r = pageLocally(views, { page: 0, size: 50, sort: 'id', dir: 1, filter: '' });
    expect(r.rows.map((x) => x.id)).toEqual(['w10', 'w2', 'w3', 'w4', 'w1']);
    expect(r.matched).toBe(5);
  });
  it('sorts by a column either way, filters, and cuts pages', () => {
    expect(pageLocally(views, { page: 0, size: 2, sort: 'tps', dir: -1, filter: '' }).rows.map((x) => x.id)).toEqual(['w1', 'w2']);
    expect(pageLocally(views, { page: 1, size: 2, sort: 'tps', dir: -1, filter: '' }).rows.map((x) => x.id)).toEqual(['w3', 'w10']);
    const f = pageLocally(views, { page: 0, size: 10, sort: 'tps', dir: 1, filter: 'IDLE' });
    expect(f.rows.map((x) => x.id)).toEqual(['w10', 'w3']);
    expect(f.matched).toBe(2);
  });
});
