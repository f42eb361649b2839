// In-process event bus of the coordinator: the hub and trainer emit, the dashboard namespace,
// metrics and logs listen. Keeps a ring buffer of recent log entries for new dashboards.

import { EventEmitter } from 'node:events';
import type { EvalPoint, HistoryPoint, LogEntry, WorkerChange } from '../../shared/protocol/dashboard.ts';

export interface BusEvents {
  step: [HistoryPoint];
  eval: [EvalPoint];
  worker: [WorkerChange];
  log: [LogEntry];
  reject: [{ workerId: string; code: string }];
  checkpoint: [{ step: number; file: string; ms: number }];
  /** An operator action that changes the status (the dashboard pushes a snapshot at once). */
  admin: [{ action: 'pause' | 'resume' | 'kick'; workerId?: string }];
  /** A preference pair was stored (POST /api/preferences); the dashboard's count follows. */
  preference: [{ count: number }];
}

export class EventBus extends EventEmitter<BusEvents> {
  readonly recent: LogEntry[] = [];

  logEntry(e: Omit<LogEntry, 't'>): void {
    const entry: LogEntry = { t: Date.now(), ...e };
    this.recent.push(entry);
    if (this.recent.length > 500) this.recent.shift();
    this.emit('log', entry);
  }
}
