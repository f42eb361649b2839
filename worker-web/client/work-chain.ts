// The worker's one promise chain: every engine operation (build, warm-up, setParams, a task,
// rebuild) runs on it, one at a time, in the order the messages arrived, so a task never runs
// against half-uploaded parameters. Work queued for a connection that is gone is skipped when its
// turn comes (the coordinator re-leases it).

export class WorkChain {
  private tail: Promise<void> = Promise.resolve();

  /** Appends a job; what it throws is dropped (jobs report their own errors). */
  then(job: () => Promise<void>): void {
    this.tail = this.tail.then(job).catch(() => undefined);
  }

  /**
   * Appends `fn`, run only if `current()` still holds when its turn comes; a throw goes to
   * `onError`. Resolves true once `fn` ran without error, false if it was skipped or threw.
   */
  gated(current: () => boolean, fn: () => Promise<void>, onError: (e: Error) => void): Promise<boolean> {
    return new Promise<boolean>((done) => {
      this.then(async () => {
        if (!current()) return done(false);
        try {
          await fn();
          done(true);
        } catch (e) {
          onError(e as Error);
          done(false);
        }
      });
    });
  }

  /** Resolves when everything queued so far has finished. */
  settled(): Promise<void> {
    return this.tail;
  }
}
