// Influence bound per step: no identity and no connection origin (IP address) is leased more than
// max(--max-share, 1/n) of a step's samples, n the number of live identities (origins) taking
// work. Under the token-weighted mean an identity's weight in the step's update is its share of
// the step's tokens, so this bounds it; a Sybil with many identities behind one address is bounded
// by its origin. With one origin (a lab cluster, the loopback chaos suite) 1/n = 1: no effect.
// Liveness first: when nobody under the cap can take the rest and nothing is in flight, the cap is
// lifted for that step (counted), so a step never stalls on it.

import type { StepWork } from '../train/step-work.ts';
import type { WorkerView } from './workers.ts';

/** The address a worker connected from ('' when unknown). */
export function originOf(w: WorkerView): string {
  return w.socket?.handshake.address ?? '';
}

export class ShareCap {
  /** Steps whose cap was lifted to keep training going. */
  lifted = 0;

  constructor(private readonly maxShare: number) {}

  /**
   * Samples `w` may still be leased in this step under the cap (>= 0). `live`: the replicas taking
   * work now (their identities and origins count for 1/n).
   */
  room(work: StepWork, w: WorkerView, live: WorkerView[]): number {
    const ids = new Set(live.map((x) => x.id));
    const origins = new Set(live.map(originOf));
    const capId = Math.ceil(Math.max(this.maxShare, 1 / Math.max(1, ids.size)) * work.size);
    const capOrigin = Math.ceil(Math.max(this.maxShare, 1 / Math.max(1, origins.size)) * work.size);
    const origin = originOf(w);
    const originIds = new Set(live.filter((x) => originOf(x) === origin).map((x) => x.id));
    let byId = 0;
    let byOrigin = 0;
    for (const l of [...work.active.values(), ...work.doneLeases.values()]) {
      const n = l.end - l.start;
      if (l.workerId === w.id) byId += n;
      if (originIds.has(l.workerId)) byOrigin += n;
    }
    return Math.max(0, Math.min(capId - byId, capOrigin - byOrigin));
  }
}
