// The liveness clock: wall time minus the time the coordinator's own event loop was stalled.
//
// A worker is dead when nothing arrived from it for --dead-after-ms. But a coordinator that was
// itself stalled (a long synchronous stretch, a GC pause, a starved process on a loaded host)
// has not read its sockets meanwhile: the heartbeats sit unread in the kernel's buffers, and the
// liveness sweep, a timer, runs before the I/O phase that would read them. Measured on wall time,
// one 3 s stall declares every connected worker dead at once (CI, 2026-12-03: an honest worker
// "silent for 3058 ms" at 3 s, in a test process starved by its neighbours). On this clock the
// stall does not count: silence is what the coordinator would have noticed while awake.
//
// The stall is measured by the sweep's own interval timer: whatever it fires later than its
// interval is time the loop was not running callbacks.

export class AwakeClock {
  private stalledMs = 0;
  private lastBeat: number;

  constructor(private readonly intervalMs: number, now = Date.now()) {
    this.lastBeat = now;
  }

  /** Call from the interval timer; returns how late it fired (counted as stalled time). */
  beat(now = Date.now()): number {
    const late = Math.max(0, now - this.lastBeat - this.intervalMs);
    this.stalledMs += late;
    this.lastBeat = now;
    return late;
  }

  /** Milliseconds on the awake clock (monotone with wall time, minus the stalls so far). */
  now(wall = Date.now()): number {
    return wall - this.stalledMs;
  }
}
