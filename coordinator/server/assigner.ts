// Work assignment is pluggable per worker role. The Scheduler (scheduler.ts) does what every role
// shares: pause / finished gating, the step lifecycle (advance + afterStep hooks), lease expiry on
// the monitor's tick. What a worker of a role is GIVEN, and what its answer means, belongs to that
// role's WorkAssigner: ReplicaAssigner (replica-assigner.ts) for data-parallel replicas today; a
// StageAssigner (pipeline stages: a layer range each) or a RoundAssigner (many local steps, then a
// compressed update) are new classes implementing this interface, registered with
// Scheduler.register(), not branches inside one schedule().
//
// Assigners never touch sockets: they reach workers through the WorkerPort (the gateway), change
// worker records through the WorkerRegistry's methods, and trainer state through trainer methods.

import type { WorkerPlan } from '../../shared/memory/plan.ts';
import type { RejectCode, ServerToClientEvents, WaitMsg } from '../../shared/protocol/messages.ts';
import type { StepSummary } from '../train/trainer.ts';
import type { WorkerView } from './workers.ts';

/** Refuse a worker's message: `reject` to the worker, counted, judged by security (gateway). */
export type Reject = (event: string, code: RejectCode, message: string, taskId?: string) => void;

/** What the gateway (owner of the sockets) does for the scheduler and assigners. */
export interface WorkerPort {
  /** Send one message to the worker's current connection (nothing when it has none). */
  send<E extends keyof ServerToClientEvents>(w: WorkerView, event: E, payload: Parameters<ServerToClientEvents[E]>[0]): void;
  /** An opaque handle of the worker's current connection (null: none), for isCurrent() later. */
  connection(w: WorkerView): object | null;
  /** True while `conn` is still the worker's open connection. */
  isCurrent(w: WorkerView, conn: object | null): boolean;
  /** Carry out a ban verdict: discard its results of the step, tell it, disconnect it. */
  ban(w: WorkerView, reason: string): void;
  /** Bytes sent to the worker's connection that it has not taken yet (0 when unknown). */
  backlog?(w: WorkerView): number;
}

/** What the scheduler offers its assigners. */
export interface AssignerHost {
  /** Hand out work again (a worker became free, a lease came back). */
  schedule(): void;
  /**
   * The running step has every result: finish it (optimizer step, afterStep hooks). `finish`
   * replaces trainer.finishStep() (a round's outer step: round-assigner.ts).
   */
  advance(finish?: () => StepSummary): void;
  /** Tell a worker why it has no work (sent once per code). */
  wait(w: WorkerView, code: WaitMsg['code'], reason: string): void;
}

export interface WorkAssigner {
  /** The plan role this assigner serves: a worker gets work only from the assigner of its role. */
  readonly role: WorkerPlan['role'];
  /** Hand work to the idle workers among `live` (every connected worker of this role). */
  assign(live: WorkerView[], now: number): void;
  /** A `result` message from one of its workers (not yet validated): fold it in or refuse it. */
  onResult(w: WorkerView, raw: unknown, reject: Reject): void;
  /** The worker is gone: its outstanding work goes back to the pool. Returns the leases released. */
  release(workerId: string): number;
  /** Monitor tick: work past its deadline goes back to the pool. */
  expire(now: number): void;
  /**
   * Keys other than its own id under which `workerId`'s work of the running step was accepted (a
   * pipeline's id): a ban discards those results too (gateway.ban).
   */
  unitsOf?(workerId: string): string[];
  /** The workers acknowledged for the accepted task `taskId` when that is not its lease's key (a pipeline's stages). */
  ackedFor?(taskId: string): string[] | undefined;
}

/**
 * A function that calls `run` once in a later turn of the event loop however often it is called
 * before then: an assigner that stopped a pass early (leases per turn) continues after the loop
 * has served what is waiting.
 */
export function onceSoon(run: () => void): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    setImmediate(() => {
      pending = false;
      run();
    });
  };
}
