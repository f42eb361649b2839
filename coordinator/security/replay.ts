// Replay detection: a SHA-256 of every accepted gradient's bytes, remembered for the last `keep`
// results. A worker that re-sends a gradient already accepted (its own from an earlier task, or a
// copy of someone else's) is refused as DUPLICATE even under a fresh task id: real gradients of
// different micro-batches or parameter versions never coincide bit for bit.

import { createHash } from 'node:crypto';

export function gradientDigest(g: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(g.buffer, g.byteOffset, g.byteLength)).digest('base64');
}

export class ReplayGuard {
  private readonly seen = new Map<string, string>();

  constructor(readonly keep = 4096) {}

  /** The task id that already sent this digest, or undefined. */
  seenBy(digest: string): string | undefined {
    return this.seen.get(digest);
  }

  remember(digest: string, taskId: string): void {
    this.seen.set(digest, taskId);
    if (this.seen.size > this.keep) this.seen.delete(this.seen.keys().next().value as string);
  }
}
