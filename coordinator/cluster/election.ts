// Leader election over a Redis lease (SET NX PX inside the ACQUIRE script, renewed by a
// compare-and-pexpire). At most one process believes it leads at any moment, as long as clocks
// run at about the same rate: a leader counts its lease from when it SENT the renewal (the lease
// in Redis started later), and steps down on its own a margin before that deadline when it could
// not renew (Redis unreachable, or the lease taken), without waiting to hear from Redis.
// Candidates try every `pollMs`: a dead leader is replaced about `ttlMs` after its last renewal.

import type { Logger } from 'pino';
import type { RunStore } from './redis.ts';
import { parseLease, type LeaseValue } from './redis.ts';

export interface ElectionHooks {
  /** This process now leads under `lease` (its epoch fences everything it writes). */
  elected(lease: LeaseValue, token: string): void;
  /** This process no longer leads (lost, expired, or stepped down): stop acting as leader now. */
  lost(why: string): void;
}

export class LeaderElection {
  private token: string | null = null;
  private validUntil = 0;
  private timer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private busy = false;
  private stopped = false;
  readonly renewMs: number;
  /** Stop acting this long before the lease could have expired in Redis. */
  private readonly marginMs: number;

  constructor(
    private readonly store: RunStore,
    private readonly me: { id: string; url: string },
    readonly ttlMs: number,
    /** The smallest epoch a new leader may take (the newest checkpoint's epoch: survives a Redis restart). */
    private readonly floorEpoch: () => number,
    private readonly hooks: ElectionHooks,
    private readonly log: Logger,
  ) {
    this.renewMs = Math.max(100, Math.floor(ttlMs / 5));
    this.marginMs = Math.max(100, Math.floor(ttlMs / 10));
  }

  get leading(): boolean {
    return this.token !== null && Date.now() < this.validUntil - this.marginMs;
  }

  /** The lease value while leading (the fencing token), else null. */
  get currentToken(): string | null {
    return this.leading ? this.token : null;
  }

  start(): void {
    const loop = () => {
      if (this.stopped) return;
      void this.tick().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.renewMs);
      });
    };
    loop();
    // A renewal that hangs (Redis stopped, not closed) must not keep a leader leading.
    this.watchdog = setInterval(() => {
      if (this.token && Date.now() >= this.validUntil - this.marginMs) this.stepDown('the lease was not renewed in time');
    }, Math.max(50, Math.floor(this.renewMs / 2)));
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.token) await this.renew();
      else await this.tryAcquire();
    } finally {
      this.busy = false;
    }
  }

  private async renew(): Promise<void> {
    const token = this.token!;
    const sentAt = Date.now();
    try {
      if (await this.store.renew(token, this.ttlMs)) {
        this.validUntil = sentAt + this.ttlMs;
        return;
      }
      return this.stepDown('the lease is held by another process');
    } catch (e) {
      // Redis unreachable: keep leading only while the lease surely still holds.
      if (Date.now() >= this.validUntil - this.marginMs) this.stepDown(`cannot renew the lease (${(e as Error).message})`);
    }
  }

  private async tryAcquire(): Promise<void> {
    const sentAt = Date.now();
    let got: { token: string; forgot: boolean } | null;
    try {
      got = await this.store.acquire(`${this.me.id}|${this.me.url}`, this.ttlMs, this.floorEpoch());
    } catch {
      return; // Redis unreachable: nobody can lead; try again
    }
    const lease = parseLease(got?.token ?? null);
    if (!got || !lease || this.stopped) return;
    this.token = got.token;
    this.validUntil = sentAt + this.ttlMs;
    // Redis came back empty: a leader of before may still count on its lease for up to a ttl (it
    // cannot renew, so it steps down by then). Hold the lease, renewed, and act only after that.
    const actAt = got.forgot ? sentAt + this.ttlMs : 0;
    if (actAt) this.log.warn({ epoch: lease.epoch, waitMs: this.ttlMs }, 'cluster: Redis lost its state; waiting one lease before leading');
    const act = () => {
      if (this.token !== got.token || this.stopped) return;
      if (Date.now() < actAt) return void setTimeout(act, actAt - Date.now());
      this.log.info({ epoch: lease.epoch }, 'cluster: this process is the leader');
      this.hooks.elected(lease, got.token);
    };
    act();
  }

  private stepDown(why: string): void {
    if (!this.token) return;
    this.token = null;
    this.validUntil = 0;
    this.log.warn({ why }, 'cluster: this process no longer leads');
    this.hooks.lost(why);
  }

  /** Give the lease up now (this process cannot lead: it failed to start as leader); others may take it. */
  resign(why: string): void {
    const t = this.token;
    this.stepDown(why);
    if (t) void this.store.release(t).catch(() => {});
  }

  /** Stop electing; a leader hands its lease back so another takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.watchdog) clearInterval(this.watchdog);
    const t = this.token;
    this.stepDown('shutting down');
    if (t) await this.store.release(t).catch(() => {});
  }
}
