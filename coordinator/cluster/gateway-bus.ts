// The event bus a gateway's WorkerHub (--redis) emits on: everything reaches the process's bus
// (dashboards, metrics, the log ring) except `step`. A gateway's scheduler "finishes a step" when
// its slice is complete; the run's real steps are the leader's, which reach every process's bus
// through Redis (node.ts). So dashboards and /metrics count each step once, on every process.

import { EventBus, type BusEvents } from '../server/events.ts';

const FORWARDED: Array<keyof BusEvents> = ['eval', 'worker', 'reject', 'checkpoint', 'admin'];

export class GatewayBus extends EventBus {
  constructor(private readonly main: EventBus) {
    super();
    for (const e of FORWARDED) this.on(e, (...a: unknown[]) => (main.emit as (e: string, ...a: unknown[]) => boolean)(e, ...a));
  }

  override logEntry(e: Parameters<EventBus['logEntry']>[0]): void {
    this.main.logEntry(e);
  }
}
