// The WorkerPort of a gateway process (--redis): everything goes to the gateway's sockets as in a
// single coordinator, except acknowledgements. A worker's `ack` says its rows are in the step;
// on a gateway that is true only once the LEADER acknowledged the partial its rows were folded
// into. So acks are held per task until then (release), and dropped when the leader refused the
// partial or went away (drop): the worker's own account (its --trace) then matches what trained.
// A `discard` of held acks (a ban restarted the slice's accumulation) is never sent: those acks
// were never sent either.

import type { ServerToClientEvents } from '../../shared/protocol/messages.ts';
import type { WorkerPort } from '../server/assigner.ts';
import type { WorkerGateway } from '../server/gateway.ts';
import type { WorkerRegistry, WorkerView } from '../server/workers.ts';

interface HeldAck {
  workerId: string;
  taskId: string;
  step: number;
}

/** Acknowledged slices remembered for a later `discard` from the leader. */
const ACKED_KEPT = 16;

export class ClusterPort implements WorkerPort {
  /** Acks of the running slice by worker task id. */
  private readonly held = new Map<string, HeldAck>();
  /** Acks of a finished slice, by the leader's task id, until the leader answers. */
  private readonly settled = new Map<string, HeldAck[]>();
  /** Acks sent for slices the leader acknowledged (newest last). */
  private readonly acked = new Map<string, HeldAck[]>();

  constructor(
    private readonly gw: WorkerGateway,
    private readonly workers: WorkerRegistry,
  ) {}

  send<E extends keyof ServerToClientEvents>(w: WorkerView, event: E, payload: Parameters<ServerToClientEvents[E]>[0]): void {
    if (event === 'ack') {
      const a = payload as { taskId: string; step: number };
      this.held.set(a.taskId, { workerId: w.id, taskId: a.taskId, step: a.step });
      return;
    }
    if (event === 'discard') {
      const d = payload as Parameters<ServerToClientEvents['discard']>[0];
      const sent = d.taskIds.filter((id) => !this.held.delete(id));
      if (sent.length === 0) return;
      return this.gw.send(w, 'discard', { ...d, taskIds: sent });
    }
    this.gw.send(w, event, payload);
  }

  /**
   * The slice `unitTaskId` is complete with the worker tasks `taskIds` folded in: their acks wait
   * for the leader's answer. Acks held for anything else (results thrown away when a ban
   * restarted the slice) are dropped: those rows were redone under new task ids.
   */
  settle(unitTaskId: string, taskIds: string[]): void {
    const mine: HeldAck[] = [];
    for (const id of taskIds) {
      const h = this.held.get(id);
      if (h) mine.push(h);
    }
    this.held.clear();
    this.settled.set(unitTaskId, mine);
  }

  /** The leader acknowledged the slice: its workers get their acks now. Returns acks sent. */
  release(unitTaskId: string): number {
    const list = this.settled.get(unitTaskId);
    if (!list) return 0;
    this.settled.delete(unitTaskId);
    let n = 0;
    for (const h of list) {
      const w = this.workers.byId.get(h.workerId);
      if (!w) continue;
      this.gw.send(w, 'ack', { taskId: h.taskId, step: h.step });
      n++;
    }
    this.acked.set(unitTaskId, list);
    while (this.acked.size > ACKED_KEPT) this.acked.delete(this.acked.keys().next().value!);
    return n;
  }

  /** The leader threw acknowledged slices away (a ban restarted its step): tell their workers. */
  discard(unitTaskIds: string[], reason: string): void {
    for (const u of unitTaskIds) {
      const list = this.acked.get(u);
      if (!list) continue;
      this.acked.delete(u);
      for (const h of list) {
        const w = this.workers.byId.get(h.workerId);
        if (w) this.gw.send(w, 'discard', { step: h.step, taskIds: [h.taskId], reason });
      }
    }
  }

  /** The leader refused the slice: its acks are never sent. */
  drop(unitTaskId: string): void {
    this.settled.delete(unitTaskId);
  }

  /** The leader went away: nothing held will be acknowledged. */
  dropAll(): void {
    this.held.clear();
    this.settled.clear();
  }

  connection(w: WorkerView): object | null {
    return this.gw.connection(w);
  }

  isCurrent(w: WorkerView, conn: object | null): boolean {
    return this.gw.isCurrent(w, conn);
  }

  ban(w: WorkerView, reason: string): void {
    this.gw.ban(w, reason);
  }

  backlog(w: WorkerView): number {
    return this.gw.backlog(w);
  }
}
