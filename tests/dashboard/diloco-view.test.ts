// The dashboard's DiLoCo panel text (dashboard/src/diloco-view.ts dilocoView): null in sync mode;
// in diloco mode the round, H, codec, wire bytes per round and per token, compression ratio and
// each lease's progress, computed from the status snapshot's numbers.
import { describe, expect, it } from 'vitest';
import { dilocoView } from '../../dashboard/src/diloco-view.ts';
import type { DilocoStatus } from '../../shared/protocol/dashboard.ts';

const d: DilocoStatus = {
  innerSteps: 50, compress: 'int8', outerLr: 0.7, outerMomentum: 0.9, deltaBytes: 1000, updateBytes: 500, bytesPerToken: 12.345, compressionRatio: 3.94, owed: 4,
  running: { round: 3, quorum: 2, participants: 2, leases: [{ workerId: 'w1', H: 50, rows: 200, done: true }, { workerId: 'w2<b>', H: 25, rows: 100, done: false }] },
};

describe('dashboard diloco view', () => {
  it('is absent in sync mode and without diloco data', () => {
    expect(dilocoView({ mode: 'sync', wire: { bytesIn: 1, bytesOut: 1 } })).toBeNull();
    expect(dilocoView({ mode: 'diloco' })).toBeNull();
  });
  it('shows round, H, bytes per round and token, ratio and per-worker progress', () => {
    const v = dilocoView({ mode: 'diloco', round: 3, wire: { bytesIn: 2048, bytesOut: 4096 }, diloco: d })!;
    expect(v.round).toBe('3 running (1/2 deltas in, quorum 2)');
    expect(v.innerSteps).toBe('50');
    expect(v.compress).toBe('int8');
    expect(v.bytesPerRound).toBe('2.00 KiB (in + out)');
    expect(v.bytesPerToken).toBe('12.3 B');
    expect(v.compressionRatio).toBe('3.9x');
    expect(v.owed).toBe('4');
    expect(v.workers.map((w) => w.text)).toEqual(['w1: H 50, 200 rows, delta in', 'w2<b>: H 25, 100 rows, training']);
    const idle = dilocoView({ mode: 'diloco', round: 0, wire: { bytesIn: 0, bytesOut: 0 }, diloco: { ...d, running: null, bytesPerToken: null, compressionRatio: null } })!;
    expect([idle.round, idle.bytesPerRound, idle.bytesPerToken, idle.compressionRatio, idle.workers.length]).toEqual(['0 done', '—', '—', '—', 0]);
  });
});
