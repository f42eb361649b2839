// Token bucket per connection: `rate` messages per second on average, bursts up to `burst`.
// Heartbeats every 2 s and one result per task are far below any sane limit; a flood is not.

import { C2S } from '../../shared/protocol/messages.ts';

/**
 * Tokens a pipeline stage's packet (`stageOut`) takes: a stage answers every hop it is sent (two
 * per micro-batch), several times a replica's rate; each answer is checked against the hop it
 * answers (coordinator/server/stage-assigner.ts), and unsolicited ones are refused and counted.
 */
export const STAGE_PACKET_COST = 0.125;

/**
 * A `result` or `delta` answering the lease its worker holds (`lease`) is not charged to the
 * bucket: its rate is the coordinator's own leasing rate. A fast honest worker (tiny tasks, ~50
 * results/s) had its results dropped past --rate-limit and its step waited for the lease to expire
 * (bench:comm's unpaced sync run stalled). A second copy, or an answer to another lease, is charged.
 */
export function answersHeldLease(event: string, payload: unknown, lease: string | null): boolean {
  return (event === C2S.result || event === C2S.delta) && lease !== null && typeof payload === 'object' && payload !== null
    && (payload as { taskId?: unknown }).taskId === lease;
}

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    now = Date.now(),
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Take `cost` tokens (default one); false when the bucket holds fewer (the message is refused). */
  take(now = Date.now(), cost = 1): boolean {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < cost) return false;
    this.tokens -= cost;
    return true;
  }
}
