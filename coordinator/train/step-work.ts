// One optimizer step's work: the global batch's sample ids, split into leases on demand.
//
// The step's ids (positions 0..n-1 of `ids`) start in a pending pool of ranges. lease() cuts the
// next range of up to `size` positions for a worker; a lease that expires, or whose worker
// disconnects or says bye, returns its exact range to the pool (re-leased in the same step under
// a NEW lease id). complete() accepts a result only for a live lease held by the sender; every
// other case is classified with a rejection code and changes nothing. The step is done when the
// pool is empty and no lease is outstanding: then every position was accepted exactly once.

import type { RejectCode } from '../../shared/protocol/messages.ts';

export interface Lease {
  id: string;
  step: number;
  version: number;
  epoch: number;
  workerId: string;
  /** [start, end) positions in the step's id list. */
  start: number;
  end: number;
  ids: number[];
  issuedAt: number;
  expiresAt: number;
  /**
   * Results of this lease being re-computed by the coordinator (coordinator/security): the answer
   * came in time, so the lease does not expire while it waits for its verdict. Changed only by
   * StepWork.hold().
   */
  holds?: number;
}

export type RetiredState = 'done' | 'expired' | 'released';

export class StepWork {
  private pending: Array<[number, number]>;
  readonly active = new Map<string, Lease>();
  /** Lease ids of this step no longer active, and why (to tell LATE from DUPLICATE). */
  readonly retired = new Map<string, RetiredState>();
  private seq = 0;
  /** Accepted leases by id, so a ban can reopen them (coordinator/security). */
  readonly doneLeases = new Map<string, Lease>();
  /** Positions accepted so far. */
  accepted = 0;
  leasedCount = 0;
  releasedCount = 0;

  constructor(
    readonly nonce: string,
    readonly step: number,
    readonly version: number,
    readonly epoch: number,
    readonly ids: number[],
  ) {
    this.pending = ids.length > 0 ? [[0, ids.length]] : [];
  }

  get size(): number {
    return this.ids.length;
  }
  get pendingPositions(): number {
    return this.pending.reduce((a, [s, e]) => a + e - s, 0);
  }
  get done(): boolean {
    return this.pending.length === 0 && this.active.size === 0;
  }

  /** Cut a lease of up to `size` positions for `workerId`, or null when nothing is pending. */
  lease(workerId: string, size: number, now: number, leaseMs: number): Lease | null {
    const r = this.pending.shift();
    if (!r) return null;
    const [s, e] = r;
    const end = Math.min(e, s + Math.max(1, Math.floor(size)));
    if (end < e) this.pending.unshift([end, e]);
    const lease: Lease = {
      id: `${this.nonce}.${this.step}.${++this.seq}`,
      step: this.step,
      version: this.version,
      epoch: this.epoch,
      workerId,
      start: s,
      end,
      ids: this.ids.slice(s, end),
      issuedAt: now,
      expiresAt: now + leaseMs,
    };
    this.active.set(lease.id, lease);
    this.leasedCount++;
    return lease;
  }

  /** Return a live lease's range to the pool (timeout, disconnect, bye, kick). */
  release(id: string, why: 'expired' | 'released'): Lease | null {
    const l = this.active.get(id);
    if (!l) return null;
    this.active.delete(id);
    this.retired.set(id, why);
    this.pending.push([l.start, l.end]);
    this.releasedCount++;
    return l;
  }

  /** Release every live lease of a worker (it died or left). */
  releaseWorker(workerId: string, why: 'expired' | 'released'): Lease[] {
    const out: Lease[] = [];
    for (const l of [...this.active.values()]) if (l.workerId === workerId) out.push(this.release(l.id, why)!);
    return out;
  }

  /**
   * Hold `l` while its answer is re-computed (coordinator/security): a held lease does not expire.
   * Returns the release of this hold (idempotent; it still applies once the step is over).
   */
  hold(l: Lease): () => void {
    l.holds = (l.holds ?? 0) + 1;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      l.holds!--;
    };
  }

  /** Leases past their deadline (and not held for verification), released. */
  expire(now: number): Lease[] {
    const out: Lease[] = [];
    for (const l of [...this.active.values()]) if (l.expiresAt <= now && !l.holds) out.push(this.release(l.id, 'expired')!);
    return out;
  }

  /**
   * Check that a result for lease `id` from `workerId` may be accepted. Returns the lease or a
   * rejection code. Changes nothing: call accept() once the rest of the result is validated.
   */
  check(id: string, workerId: string): Lease | { code: RejectCode; message: string } {
    const l = this.active.get(id);
    if (l) {
      if (l.workerId !== workerId) return { code: 'NOT_YOUR_TASK', message: `task ${id} is leased to another worker` };
      return l;
    }
    const r = this.retired.get(id);
    if (r === 'done') return { code: 'DUPLICATE', message: `task ${id} was already completed` };
    if (r) return { code: 'LATE', message: `task ${id}'s lease ${r === 'expired' ? 'expired' : 'was withdrawn'} and its samples were re-leased` };
    return { code: 'UNKNOWN_TASK', message: `task ${id} is not part of step ${this.step}` };
  }

  /** Mark a checked lease done. */
  accept(l: Lease): void {
    this.active.delete(l.id);
    this.retired.set(l.id, 'done');
    this.doneLeases.set(l.id, l);
    this.accepted += l.end - l.start;
  }

  /** Return accepted leases matching `pred` to the pool: their results were discarded (ban). */
  reopen(pred: (l: Lease) => boolean): Lease[] {
    const out: Lease[] = [];
    for (const l of [...this.doneLeases.values()]) {
      if (!pred(l)) continue;
      this.doneLeases.delete(l.id);
      this.retired.set(l.id, 'released');
      this.pending.push([l.start, l.end]);
      this.accepted -= l.end - l.start;
      this.releasedCount++;
      out.push(l);
    }
    return out;
  }

  /** Live leases of a worker. */
  leasesOf(workerId: string): Lease[] {
    return [...this.active.values()].filter((l) => l.workerId === workerId);
  }
}
