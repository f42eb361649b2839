// Wall-clock ms and sleeping, the same in Node and in a Web Worker (performance.now() is
// monotonic; timeOrigin makes it comparable with the coordinator's echo of our heartbeat time).

export function now(): number {
  return typeof performance !== 'undefined' ? performance.now() + (performance.timeOrigin ?? 0) : Date.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
