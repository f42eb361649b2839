// A per-client request budget for public write routes (POST /api/preferences): one token bucket
// per client address (the socket's address; this server does not trust X-Forwarded-For), refilled
// at `perMinute` / 60 per second and holding at most `perMinute` tokens (a minute's worth of burst).
// The map is bounded: past `maxClients` entries, buckets that are full again (idle clients) go first.

import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../../shared/errors.ts';
import { TokenBucket } from '../security/rate-limit.ts';

export class ClientRateLimit {
  private readonly buckets = new Map<string, { bucket: TokenBucket; last: number }>();
  /** ms after which an unused bucket is full again (burst / rate). */
  private readonly refillMs: number;

  constructor(
    readonly perMinute: number,
    private readonly maxClients = 10_000,
    private readonly clock: () => number = Date.now,
  ) {
    this.refillMs = (Math.max(1, perMinute) / (perMinute / 60)) * 1000;
  }

  /** Takes one token for `client`; false when its budget is spent. */
  take(client: string, now = this.clock()): boolean {
    let e = this.buckets.get(client);
    if (!e) {
      if (this.buckets.size >= this.maxClients) this.prune(now);
      e = { bucket: new TokenBucket(this.perMinute / 60, Math.max(1, this.perMinute), now), last: now };
      this.buckets.set(client, e);
    }
    e.last = now;
    return e.bucket.take(now);
  }

  private prune(now: number): void {
    for (const [k, e] of this.buckets) {
      // An idle client's bucket has refilled: forgetting it changes nothing for that client.
      if (now - e.last >= this.refillMs) this.buckets.delete(k);
    }
    // Still full of busy clients: drop the oldest entries (Map keeps insertion order).
    for (const k of this.buckets.keys()) {
      if (this.buckets.size < this.maxClients) break;
      this.buckets.delete(k);
    }
  }

  /** Express middleware: 429 ERR_RATE_LIMITED naming the route once a client's budget is spent. */
  middleware(where: string) {
    return (req: Request, _res: Response, next: NextFunction): void => {
      const client = req.socket.remoteAddress ?? 'unknown';
      if (this.take(client)) return next();
      next(new AppError('ERR_RATE_LIMITED', `${where}: more than ${this.perMinute} requests per minute from ${client}`, 429,
        'wait a little and send it again'));
    };
  }
}
