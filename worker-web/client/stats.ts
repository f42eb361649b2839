// The worker's statistics: what the tab and the Node log show. One book per client; the
// connection protocol and the task handlers write to it, `onStats` gets a fresh copy on every
// change (the tab posts it to the page, so it must not share mutable parts with the live object).

import type { ModelConfig } from '../../shared/model/config.ts';
import type { WirePlan, WorkerState } from '../../shared/protocol/messages.ts';
import type { DeviceDescription } from './engine-host.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Everything the tab and the Node log show; a fresh copy is passed to onStats on every change. */
export interface WorkerStats {
  /** Loop state: what the volunteer sees. */
  state: 'starting' | 'connecting' | 'warming up' | 'waiting' | 'idle' | 'computing' | 'paused' | 'rebuilding' | 'stopped';
  /** Why (wait reason, last error, stop reason). */
  detail: string;
  connected: boolean;
  workerId?: string;
  backend: string;
  adapter?: DeviceDescription['adapter'];
  probedBytes?: number;
  plan?: WirePlan;
  model?: ModelConfig;
  paramCount?: number;
  step: number;
  version: number;
  tasksDone: number;
  accepted: number;
  rejected: number;
  rejectedByCode: Record<string, number>;
  lastLoss?: number;
  tokens: number;
  /** Tokens/s over the recent tasks (compute time only). */
  tokensPerSec: number;
  /** Total forward+backward time spent for the cluster, ms. */
  gpuMs: number;
  reconnects: number;
  deviceLosses: number;
  /** Malformed messages sent (fault garbage). */
  garbageSent: number;
  /** Results replayed (fault stale). */
  replays: number;
  rttMs?: number;
}

/** Counters a fault wrapper bumps (they show what the fault did). */
export type FaultCounter = 'garbageSent' | 'replays';

/** Tasks the tokens/s rate averages over. */
const RATE_WINDOW = 8;

export class StatsBook {
  readonly stats: WorkerStats;
  private rateWindow: Array<{ tokens: number; ms: number }> = [];

  constructor(
    backend: string,
    private readonly onStats?: (s: WorkerStats) => void,
  ) {
    this.stats = {
      state: 'starting', detail: '', connected: false, backend, step: 0, version: -1,
      tasksDone: 0, accepted: 0, rejected: 0, rejectedByCode: {}, tokens: 0, tokensPerSec: 0, gpuMs: 0,
      reconnects: 0, deviceLosses: 0, garbageSent: 0, replays: 0,
    };
  }

  update(p: Partial<WorkerStats>): void {
    Object.assign(this.stats, p);
    this.onStats?.({ ...this.stats, rejectedByCode: { ...this.stats.rejectedByCode } });
  }

  count(c: FaultCounter | 'reconnects' | 'deviceLosses' | 'accepted'): void {
    this.stats[c]++;
  }

  /** A reject from the coordinator; only rejected results count as rejected work. */
  rejectedMessage(code: string, event: unknown): void {
    this.stats.rejectedByCode[code] = (this.stats.rejectedByCode[code] ?? 0) + 1;
    if (event === 'result') this.stats.rejected++;
  }

  /** A task's result went out: counts it and returns the recent tokens/s (compute wall time). */
  taskSent(tokens: number, gpuMs: number, wallMs: number): number {
    this.stats.tasksDone++;
    this.stats.tokens += tokens;
    this.stats.gpuMs += gpuMs;
    this.rateWindow.push({ tokens, ms: wallMs });
    if (this.rateWindow.length > RATE_WINDOW) this.rateWindow.shift();
    const tw = this.rateWindow.reduce((a, x) => a + x.tokens, 0);
    const mw = this.rateWindow.reduce((a, x) => a + x.ms, 0);
    return mw > 0 ? (tw * 1000) / mw : 0;
  }

  /** The loop state as the heartbeat reports it. */
  wireState(): WorkerState {
    switch (this.stats.state) {
      case 'computing':
        return 'computing';
      case 'paused':
        return 'paused';
      case 'waiting':
        return 'waiting';
      default:
        return 'idle';
    }
  }
}
