// Atomic file replacement for everything the coordinator writes into the run directory
// (checkpoints, the ban list): a temporary file in the same directory, fsync, rename over the
// target, fsync the directory. A crash or a failed write at any moment leaves either the previous
// file or the new complete one, never a torn one, and no temporary file behind.

import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Write `pieces` to `file` atomically. On failure the temporary file is removed, the target is
 * untouched, and the original error (with its errno `code`) is rethrown for the caller to name.
 */
export function writeFileAtomic(file: string, pieces: Uint8Array[]): void {
  const tmp = `${file}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'w', 0o644);
    for (const p of pieces) {
      let off = 0;
      while (off < p.length) off += writeSync(fd, p, off, p.length - off);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
    try {
      const dfd = openSync(dirname(file), 'r');
      fsyncSync(dfd);
      closeSync(dfd);
    } catch {
      // Some filesystems refuse fsync on directories; the rename itself is still atomic.
    }
  } catch (e) {
    if (fd !== undefined) try { closeSync(fd); } catch { /* already failing */ }
    try {
      rmSync(tmp, { force: true });
    } catch {
      // nothing more to clean up
    }
    throw e;
  }
}
