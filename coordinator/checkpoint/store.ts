// The run directory's checkpoints: ckpt-<step, 9 digits>.vtc, newest = highest step. Keeps the
// last K, finds the newest VALID one on start (corrupt ones are reported and skipped, never
// deleted: an operator may want to look at them).

import { accessSync, constants, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppError, isAppError } from '../../shared/errors.ts';
import { readCheckpoint, writeCheckpointFile, type CheckpointData } from './format.ts';

const NAME = /^ckpt-(\d{9})\.vtc$/;

export function checkpointName(step: number): string {
  return `ckpt-${String(step).padStart(9, '0')}.vtc`;
}

/** Checkpoint files of a run directory, newest first. */
export function listCheckpoints(runDir: string): Array<{ file: string; step: number }> {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch {
    return [];
  }
  return names
    .map((n) => ({ n, m: NAME.exec(n) }))
    .filter((x) => x.m)
    .map((x) => ({ file: join(runDir, x.n), step: Number(x.m![1]) }))
    .sort((a, b) => b.step - a.step);
}

export interface LoadedCheckpoint {
  file: string;
  data: CheckpointData;
  /** Newer files that failed verification, with why. */
  skipped: Array<{ file: string; error: string }>;
}

/** The newest checkpoint that verifies, or undefined; corrupt ones are listed in `skipped`. */
export function loadNewestValid(runDir: string): { found?: LoadedCheckpoint; skipped: Array<{ file: string; error: string }> } {
  const skipped: Array<{ file: string; error: string }> = [];
  for (const { file } of listCheckpoints(runDir)) {
    try {
      return { found: { file, data: readCheckpoint(file), skipped }, skipped };
    } catch (e) {
      if (!isAppError(e)) throw e;
      skipped.push({ file, error: e.message });
    }
  }
  return { skipped };
}

/** Create the run directory if needed and prove it is writable (ERR_RUN_DIR otherwise). */
export function ensureRunDir(runDir: string): void {
  try {
    mkdirSync(runDir, { recursive: true });
    accessSync(runDir, constants.W_OK);
    const probe = join(runDir, `.write-probe-${process.pid}`);
    writeFileSync(probe, 'ok');
    rmSync(probe);
  } catch (e) {
    throw new AppError('ERR_RUN_DIR', `run directory ${runDir} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 500,
      'pass --run-dir DIR pointing at a writable directory');
  }
}

/** Write ckpt for data.meta.step atomically, then delete all but the newest `keep`. */
export function saveCheckpoint(runDir: string, data: CheckpointData, keep: number): string {
  const file = join(runDir, checkpointName(data.meta.step));
  writeCheckpointFile(file, data);
  for (const old of listCheckpoints(runDir).slice(keep)) rmSync(old.file, { force: true });
  return file;
}
