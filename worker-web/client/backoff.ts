// Reconnect delays: exponential with "full jitter" (AWS architecture blog) so that a crowd of
// volunteers dropped by one coordinator restart does not come back in lockstep. Randomness comes
// from the seeded Rng so tests can pin the sequence.

import { Rng } from '../../shared/rng.ts';

export interface BackoffOptions {
  /** First delay ceiling, ms. */
  baseMs: number;
  /** Largest delay ceiling, ms. */
  maxMs: number;
  /** Growth per attempt. */
  factor: number;
  /** Fraction of the ceiling that is randomised: 0 = deterministic, 1 = full jitter. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 15_000, factor: 2, jitter: 0.5 };

export class Backoff {
  private attempt = 0;
  private readonly rng: Rng;

  constructor(
    readonly opts: BackoffOptions = DEFAULT_BACKOFF,
    seed = 1,
  ) {
    if (!(opts.baseMs > 0) || !(opts.maxMs >= opts.baseMs) || !(opts.factor >= 1) || !(opts.jitter >= 0 && opts.jitter <= 1)) {
      throw new RangeError(`backoff: invalid options ${JSON.stringify(opts)} (need 0 < baseMs <= maxMs, factor >= 1, 0 <= jitter <= 1)`);
    }
    this.rng = new Rng(seed);
  }

  /** Delay before the next attempt; each call counts one failed attempt. */
  next(): number {
    const ceiling = Math.min(this.opts.maxMs, this.opts.baseMs * this.opts.factor ** this.attempt);
    this.attempt++;
    const fixed = ceiling * (1 - this.opts.jitter);
    return Math.round(fixed + this.rng.next() * ceiling * this.opts.jitter);
  }

  /** After a successful connection: start again from baseMs. */
  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
