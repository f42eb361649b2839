// Influence bound per step: no identity and no connection origin (IP address) is leased more than
// max(--max-share, 1/n) of a step's samples, n the number of live identities (origins) taking
// work. Under the token-weighted mean an identity's weight in the step's update is its share of
// the step's tokens, so this bounds it; a Sybil with many identities behind one address is bounded
// by its origin. With one origin (a lab cluster, the loopback chaos suite) 1/n = 1: no effect.
// Liveness first: when nobody under the cap can take the rest and nothing is in flight, the cap is
// lifted for that step (counted), so a step never stalls on it.
// Whom it binds: identities the security policy does not trust yet (in probation, or with a
// mismatch) and every identity of an address with a recent ban (`capped`). Trusted identities are
// not capped: volunteers' devices differ ~1000x in speed, and leasing in proportion to throughput
// is what lets a fast one carry most of a step (tests/coordinator/scheduling.test.ts); a trusted
// identity that turns is caught by sampling and unusual-result re-computation instead.

import type { StepWork } from '../train/step-work.ts';
import type { WorkerView } from './workers.ts';

/** The address a worker connected from ('' when unknown). */
export function originOf(w: WorkerView): string {
  return w.socket?.handshake.address ?? '';
}

export class ShareCap {
  /** Steps whose cap was lifted to keep training going. */
  lifted = 0;

  constructor(
    private readonly maxShare: number,
    /** Is this worker bound by the cap? Default: every worker. */
    private readonly capped: (w: WorkerView) => boolean = () => true,
  ) {}

  /**
   * Samples `w` may still be leased in this step under the cap (>= 0). `live`: the replicas taking
   * work now (their identities and origins count for 1/n). O(live + leases): to ask for many
   * workers in one pass, take a snapshot() once and ask it.
   */
  room(work: StepWork, w: WorkerView, live: WorkerView[]): number {
    return this.snapshot(work, live).room(w);
  }

  /**
   * The cap's state for one assignment pass, in O(live + leases): then room(w) is O(1) for each
   * worker, and note(w, n) counts a lease just handed out (so later workers of the same pass see it).
   */
  snapshot(work: StepWork, live: WorkerView[]): ShareSnapshot {
    const ids = new Set<string>();
    const originOfId = new Map<string, string>();
    for (const x of live) {
      ids.add(x.id);
      originOfId.set(x.id, originOf(x));
    }
    const origins = new Set(originOfId.values());
    const capId = Math.ceil(Math.max(this.maxShare, 1 / Math.max(1, ids.size)) * work.size);
    const capOrigin = Math.ceil(Math.max(this.maxShare, 1 / Math.max(1, origins.size)) * work.size);
    const byId = new Map<string, number>();
    const byOrigin = new Map<string, number>();
    const count = (id: string, n: number) => {
      byId.set(id, (byId.get(id) ?? 0) + n);
      // Leases of identities no longer live do not count against an origin (as before: the
      // origin's ids are the live ones).
      const o = originOfId.get(id);
      if (o !== undefined) byOrigin.set(o, (byOrigin.get(o) ?? 0) + n);
    };
    for (const l of work.active.values()) count(l.workerId, l.end - l.start);
    for (const l of work.doneLeases.values()) count(l.workerId, l.end - l.start);
    return {
      room: (w) => (this.capped(w) ? Math.max(0, Math.min(capId - (byId.get(w.id) ?? 0), capOrigin - (byOrigin.get(originOf(w)) ?? 0))) : Infinity),
      note: (w, n) => count(w.id, n),
    };
  }
}

/** The share cap of one assignment pass (ShareCap.snapshot). */
export interface ShareSnapshot {
  room(w: WorkerView): number;
  note(w: WorkerView, samples: number): void;
}
