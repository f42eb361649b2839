// The dashboard's Cluster panel (dashboard/src/cluster-view.ts clusterView): the processes of a
// --redis run from the status snapshot's cluster block, the leader and its epoch, workers per
// process and in all, the answering process marked, and a warning when nobody leads or Redis is
// unreachable; nothing at all on a single coordinator. Untrusted text is cut, bad rows skipped.
import { describe, expect, it } from 'vitest';
import { clusterView } from '../../dashboard/src/cluster-view.ts';
import type { ClusterStatus } from '../../shared/protocol/dashboard.ts';

const cluster = (over: Partial<ClusterStatus> = {}): ClusterStatus => ({
  run: 'demo', leader: 'p-2', epoch: 3, self: 'p-1', redis: true,
  processes: [
    { id: 'p-1', url: 'http://10.0.0.1:8080', role: 'gateway', workers: 4 },
    { id: 'p-2', url: 'http://10.0.0.2:8080', role: 'leader', workers: 7 },
    { id: 'p-3', url: 'http://10.0.0.3:8080', role: 'gateway', workers: 1 },
  ],
  ...over,
});

describe('cluster panel view', () => {
  it('is absent on a single coordinator', () => {
    expect(clusterView({})).toBeNull();
  });

  it('names the run, the leader with its epoch, the processes and all their workers', () => {
    const v = clusterView({ cluster: cluster() })!;
    expect(v.summary).toBe('run demo · leader p-2 (epoch 3) · 3 processes · 12 workers');
    expect(v.warning).toBe('');
    expect(v.rows.map((r) => [r.id, r.role, r.workers, r.self])).toEqual([
      ['p-1', 'gateway', '4', true], ['p-2', 'leader', '7', false], ['p-3', 'gateway', '1', false],
    ]);
  });

  it('warns when nobody leads, and when this process cannot reach Redis', () => {
    expect(clusterView({ cluster: cluster({ leader: null, epoch: 0 }) })!.summary).toContain('no leader');
    expect(clusterView({ cluster: cluster({ leader: null, epoch: 0 }) })!.warning).toMatch(/No process holds the leader lease/);
    expect(clusterView({ cluster: cluster({ redis: false, leader: null }) })!.warning).toMatch(/cannot reach Redis/);
  });

  it('skips malformed rows and cuts long text', () => {
    const bad = cluster({ processes: [null as never, { id: 'x'.repeat(500), url: 'u', role: 'evil' as never, workers: -3 }] });
    const v = clusterView({ cluster: bad })!;
    expect(v.rows).toHaveLength(1);
    expect(v.rows[0].id).toHaveLength(64);
    expect(v.rows[0].role).toBe('gateway');
    expect(v.rows[0].workers).toBe('0');
  });
});
