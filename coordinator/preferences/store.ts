// The run directory's collected preference pairs (issue 16): `preferences.jsonl`, append-only, one
// `{prompt, chosen, rejected, step, createdAt}` per line (the row rules are shared/data/preference-rows.ts).
//
//  - An append is answered only after its bytes are fsync'd; appends run one at a time (a queue),
//    so two requests never interleave their bytes and `count` is the order they were written in.
//  - A failed append (ENOSPC, EIO, ...) truncates the file back to where it was: the file, the rows
//    in memory and the count are exactly what they were before (nothing half-written stays).
//  - On start a torn last line (the coordinator died mid-append) is skipped with a warning. Its bytes
//    are first saved to `preferences.torn-<time>.jsonl` (fsync'd), then cut from the file, so later
//    appends start on a fresh line and nothing a user sent is ever deleted. A complete last row that
//    lost only its newline is kept and the newline added.
//  - `committedBytes` is the length of the fsync'd prefix; the download streams exactly that range,
//    which no running append can change (the file only grows past it).

import { closeSync, existsSync, fsyncSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AppError } from '../../shared/errors.ts';
import { checkPreferenceRow, parsePreferenceJsonl, type PreferenceRow } from '../../shared/data/preference-rows.ts';
import { writeFileAtomic } from '../checkpoint/atomic.ts';

export const PREFERENCES_FILE = 'preferences.jsonl';

/** A stored row; rows appended by this server always carry `step` and `createdAt`. */
export type StoredPreference = PreferenceRow;

export interface StoreLog {
  warn(obj: object, msg: string): void;
}

export interface OpenedStore {
  store: PreferenceStore;
  /** What the load had to say (a torn line skipped and where its bytes went), for the log and dashboard. */
  warnings: string[];
}

/** Where a torn tail goes: next to the file, never overwriting an earlier one. */
function tornName(dir: string, now: Date): string {
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  for (let i = 0; ; i++) {
    const f = join(dir, `preferences.torn-${stamp}${i ? `-${i}` : ''}.jsonl`);
    if (!existsSync(f)) return f;
  }
}

function fsyncFile(file: string): void {
  const fd = openSync(file, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes a new file's directory entry durable (some filesystems refuse: the data itself is synced). */
function syncDir(file: string): void {
  try {
    const dfd = openSync(dirname(file), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // directory fsync unsupported here
  }
}

/** A failed append, as the client is told (the file's name, not the server's path). */
function writeError(e: unknown): AppError {
  const code = (e as NodeJS.ErrnoException).code;
  return new AppError('ERR_PREFERENCES_WRITE', `${PREFERENCES_FILE} in the run directory: append failed (${code ?? (e as Error).message}); nothing was recorded`,
    code === 'ENOSPC' ? 507 : 500,
    code === 'ENOSPC' ? 'the disk is full; free space and send the choice again — the stored preferences are intact'
      : 'check that the run directory is writable; the stored preferences are intact');
}

export class PreferenceStore {
  private readonly rows: StoredPreference[];
  private bytes: number;
  /** The tail of the append queue: each append waits for the one before. */
  private queue: Promise<unknown> = Promise.resolve();
  private handle: FileHandle | null = null;
  /** Bytes past `bytes` may be on disk from a failed append whose rollback failed too. */
  private dirty = false;
  private closed = false;

  private constructor(readonly file: string, rows: StoredPreference[], bytes: number) {
    this.rows = rows;
    this.bytes = bytes;
  }

  /**
   * Loads `<runDir>/preferences.jsonl` (absent = empty). A torn last line is moved aside (see the
   * header); any other bad line is ERR_PREFERENCE_ROW naming `file:line`, and the file is left as
   * it is for the operator to look at.
   */
  static open(runDir: string, now = new Date()): OpenedStore {
    const file = join(runDir, PREFERENCES_FILE);
    if (!existsSync(file)) return { store: new PreferenceStore(file, [], 0), warnings: [] };
    let buf: Buffer;
    try {
      buf = readFileSync(file);
    } catch (e) {
      throw new AppError('ERR_PREFERENCES_READ', `${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 500,
        'make the file readable, or move it away to start a new collection');
    }
    const parsed = parsePreferenceJsonl(buf.toString('utf8'), file, { tornLastLine: 'skip' });
    const warnings = [...parsed.warnings];
    let size = buf.length;
    if (parsed.warnings.length > 0) {
      // The skipped line is the last one with content: from the byte after the newline before it.
      let end = buf.length;
      while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d || buf[end - 1] === 0x20 || buf[end - 1] === 0x09)) end--;
      const start = buf.lastIndexOf(0x0a, end - 1) + 1;
      const aside = tornName(runDir, now);
      try {
        writeFileAtomic(aside, [buf.subarray(start)]); // saved (fsync'd) before anything is cut
        truncateSync(file, start);
        fsyncFile(file);
      } catch (e) {
        throw new AppError('ERR_PREFERENCES_WRITE', `${file}: cannot set the torn last line aside (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 500,
          'free space or make the run directory writable; nothing was lost (the file is unchanged, or its torn bytes were saved first)');
      }
      size = start;
      warnings.push(`${file}: the torn line's ${buf.length - start} bytes were saved to ${aside} and cut from the file`);
    } else if (buf.length > 0 && buf[buf.length - 1] !== 0x0a) {
      // A complete row without its newline: keep it, end the line so the next append starts fresh.
      const fd = openSync(file, 'a');
      try {
        while (writeSync(fd, '\n') < 1) { /* retry a zero-byte write */ }
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      size = buf.length + 1;
    }
    return { store: new PreferenceStore(file, parsed.rows, size), warnings };
  }

  /** Rows stored (and fsync'd) so far. */
  get count(): number {
    return this.rows.length;
  }

  /** Bytes of the file that hold exactly the stored rows (what a download sends). */
  get committedBytes(): number {
    return this.bytes;
  }

  /** Rows [offset, offset + limit), oldest first. */
  page(offset: number, limit: number): StoredPreference[] {
    return this.rows.slice(offset, offset + limit);
  }

  /**
   * Appends one validated row with its step and time; resolves once it is on disk. Throws
   * ERR_PREFERENCE_ROW (400) for a bad row and ERR_PREFERENCES_WRITE (507 disk full, else 500)
   * when the disk refuses; either way nothing changed.
   */
  append(input: { prompt: string; chosen: string; rejected: string }, step: number, now = new Date()): Promise<{ row: StoredPreference; count: number }> {
    if (this.closed) {
      return Promise.reject(new AppError('ERR_SHUTTING_DOWN', 'preferences: the coordinator is shutting down; nothing was recorded', 503, 'send it again once the coordinator is back'));
    }
    const row = checkPreferenceRow({ prompt: input.prompt, chosen: input.chosen, rejected: input.rejected, step, createdAt: now.toISOString() }, 'preference') as StoredPreference;
    const run = this.queue.then(() => this.write(row));
    this.queue = run.catch(() => undefined); // a failed append does not block the next
    return run;
  }

  private async write(row: StoredPreference): Promise<{ row: StoredPreference; count: number }> {
    const line = Buffer.from(`${JSON.stringify(row)}\n`, 'utf8');
    const before = this.bytes;
    try {
      if (!this.handle) {
        const created = !existsSync(this.file);
        this.handle = await open(this.file, 'a', 0o644);
        if (created) syncDir(this.file);
      }
      // An earlier failed append could not cut its partial bytes: cut them now, before writing.
      if (this.dirty) {
        await this.handle.truncate(before);
        await this.handle.sync();
        this.dirty = false;
      }
      let off = 0;
      while (off < line.length) off += (await this.handle.write(line, off, line.length - off)).bytesWritten;
      await this.handle.sync();
    } catch (e) {
      await this.rollback(before);
      throw writeError(e);
    }
    this.bytes = before + line.length;
    this.rows.push(row);
    return { row, count: this.rows.length };
  }

  /** Cuts a partly written line back off (O_APPEND writes go to the new end afterwards). */
  private async rollback(size: number): Promise<void> {
    try {
      if (this.handle) {
        await this.handle.truncate(size);
        await this.handle.sync();
      }
    } catch {
      // Not cut now: the next append cuts first (or, after a crash, the load rule sets it aside).
      this.dirty = true;
    }
    try {
      await this.handle?.close();
    } catch {
      // already failing
    }
    this.handle = null;
  }

  /** Waits for queued appends, then closes the file. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    await this.handle?.close();
    this.handle = null;
  }
}
