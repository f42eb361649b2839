// The ban list on disk: RUN_DIR/bans.json, so a banned worker that reconnects with its old id
// after a coordinator crash or restart is still refused. Small JSON (an operator may read or edit
// it) with a format tag and version like every file we write; rewritten whole and atomically
// (temp + fsync + rename) on every ban, so a crash or a full disk leaves the previous good list.
//
//   {"format": "vt-bans", "version": 1, "bans": [{"id": "w3-ab12", "reason": "...", "at": 1764300000000}]}

import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppError } from '../../shared/errors.ts';
import { writeFileAtomic } from '../checkpoint/atomic.ts';

export const BANS_FILE = 'bans.json';
export const BANS_FORMAT = 'vt-bans';
export const BANS_FORMAT_VERSION = 1;

export interface BanEntry {
  id: string;
  reason: string;
  /** Epoch milliseconds of the ban. */
  at: number;
}

export function bansPath(runDir: string): string {
  return join(runDir, BANS_FILE);
}

/** Parse and check a ban file's text; `where` names the file in ERR_BANS_CORRUPT. */
export function decodeBans(text: string, where: string): BanEntry[] {
  const bad = (why: string) =>
    new AppError('ERR_BANS_CORRUPT', `ban list ${where}: ${why}`, 500, 'the file is damaged or not a ban list; fix or delete it (a copy is kept as .corrupt)');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null) throw bad('not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.format !== BANS_FORMAT) throw bad(`format ${JSON.stringify(d.format)}, expected "${BANS_FORMAT}"`);
  if (d.version !== BANS_FORMAT_VERSION) throw bad(`version ${JSON.stringify(d.version)}, this build reads ${BANS_FORMAT_VERSION}`);
  if (!Array.isArray(d.bans)) throw bad('"bans" is not an array');
  return d.bans.map((b: unknown, i: number) => {
    const e = b as Partial<BanEntry> | null;
    if (typeof e !== 'object' || e === null || typeof e.id !== 'string' || e.id === '' || typeof e.reason !== 'string' || typeof e.at !== 'number' || !Number.isFinite(e.at)) {
      throw bad(`bans[${i}] is not {id, reason, at}`);
    }
    return { id: e.id, reason: e.reason, at: e.at };
  });
}

export function encodeBans(bans: BanEntry[]): string {
  return `${JSON.stringify({ format: BANS_FORMAT, version: BANS_FORMAT_VERSION, bans }, null, 1)}\n`;
}

/**
 * The ban list of a run directory. No file: empty, no warning (a new run). A file that cannot be
 * read or parsed: empty plus a warning naming the file, never a throw: a damaged ban list must not
 * keep the cluster down. The damaged file is copied to `bans.json.corrupt` (best effort) because
 * the next ban rewrites bans.json, and an operator may want to recover the ids from it.
 */
export function loadBans(runDir: string): { file: string; bans: BanEntry[]; warning: string | null } {
  const file = bansPath(runDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { file, bans: [], warning: null };
    return { file, bans: [], warning: `ban list ${file} cannot be read (${code ?? (e as Error).message}); starting with an empty ban list` };
  }
  try {
    return { file, bans: decodeBans(text, file), warning: null };
  } catch (e) {
    let kept = '';
    try {
      copyFileSync(file, `${file}.corrupt`);
      kept = ` (copy kept as ${file}.corrupt)`;
    } catch {
      // Nothing more to do: the warning still names the file.
    }
    return { file, bans: [], warning: `${(e as Error).message}; starting with an empty ban list${kept}` };
  }
}

/** Replace the ban file atomically; ERR_BANS_WRITE on failure, the previous file intact. */
export function writeBans(file: string, bans: BanEntry[]): void {
  try {
    writeFileAtomic(file, [new TextEncoder().encode(encodeBans(bans))]);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AppError('ERR_BANS_WRITE', `ban list ${file}: write failed (${code ?? (e as Error).message})`, 500,
      code === 'ENOSPC' ? 'the disk is full; free space — the previous ban list is still valid and the ban holds until restart'
        : 'check that the run directory is writable; the previous ban list is still valid and the ban holds until restart');
  }
}
