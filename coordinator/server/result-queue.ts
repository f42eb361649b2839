// Back-pressure for results. Checking and folding in a result costs milliseconds (validation, the
// security checks, the fold); when 1,000 workers answer within a few seconds, one poll phase of
// the event loop can hold hundreds of them, and handling them all in that turn stalled heartbeats
// and /healthz for seconds. So results are handled at once while the current turn has spent less
// than BUDGET_MS on them (always, with few workers: behaviour unchanged), and otherwise queued and
// handled in later turns, BUDGET_MS per turn, in arrival order. A connection's queued results are
// handled before its bye or disconnect (flush), as they arrived before it. The queue holds decoded
// results (views of their frames), at most QUEUE_MAX_BYTES of them: a result that would go over has
// the oldest handled at once until it fits (then the event loop itself is the back-pressure, as
// before: further results wait in the kernel's socket buffers).

export const BUDGET_MS = 20;
export const QUEUE_MAX_BYTES = 64 * 2 ** 20;

interface Entry {
  conn: object;
  run: () => void;
  bytes: number;
}

export class ResultQueue {
  private readonly queue: Entry[] = [];
  /** When this turn started handling results (-1: not yet this turn). */
  private turnStart = -1;
  private scheduled = false;

  private bytes = 0;

  /** Handle a result (`bytes`: its size, for the bound) now if the turn's budget allows, else queue it. */
  run(conn: object, fn: () => void, bytes = 0): void {
    if (this.queue.length === 0) {
      const now = performance.now();
      if (this.turnStart < 0) {
        this.turnStart = now;
        this.nextTurn();
      }
      if (now - this.turnStart < BUDGET_MS) return fn();
    }
    // Over the bound: the oldest results are handled now until this one fits (or nothing is left
    // to wait before it), so memory stays bounded and the arrival order is kept.
    while (this.queue.length > 0 && this.bytes + bytes > QUEUE_MAX_BYTES) this.take().run();
    if (this.queue.length === 0 && bytes > QUEUE_MAX_BYTES) return fn();
    this.queue.push({ conn, run: fn, bytes });
    this.bytes += bytes;
    this.nextTurn();
  }

  private take(): Entry {
    const e = this.queue.shift()!;
    this.bytes -= e.bytes;
    return e;
  }

  /** Bytes of the results waiting. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /** Handle every queued result of `conn` now (its bye or disconnect follows them). */
  flush(conn: object): void {
    if (this.queue.length === 0) return;
    const mine = this.queue.filter((e) => e.conn === conn);
    if (mine.length === 0) return;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i].conn !== conn) continue;
      this.bytes -= this.queue[i].bytes;
      this.queue.splice(i, 1);
    }
    for (const e of mine) e.run();
  }

  get length(): number {
    return this.queue.length;
  }

  private nextTurn(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.turnStart = performance.now();
      const end = this.turnStart + BUDGET_MS;
      try {
        while (this.queue.length > 0 && performance.now() < end) this.take().run();
      } finally {
        // A new budget for results arriving in the next poll phase, and again for the queue.
        this.turnStart = -1;
        if (this.queue.length > 0) this.nextTurn();
      }
    });
  }
}
