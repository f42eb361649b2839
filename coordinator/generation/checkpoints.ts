// Checkpoints of the run directory as models to generate from, by NAME only (never a path): the
// loader behind GenerateContext.loadCheckpoint, also used by tests and tools.

import { basename } from 'node:path';
import { AppError } from '../../shared/errors.ts';
import { listCheckpoints, readCheckpoint } from '../checkpoint/index.ts';
import type { LiveModel } from './generate.ts';

/** A checkpoint file name as clients may give it. */
export const CHECKPOINT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * A GenerateContext.loadCheckpoint for a run directory: accepts only the NAME of a checkpoint
 * that listCheckpoints() finds there (404 listing what exists otherwise), never a path. The last
 * loaded checkpoint is kept, so repeated requests do not re-read the file.
 */
export function checkpointLoader(runDir: string): (name: string) => Promise<LiveModel> {
  let cached: { name: string; model: LiveModel } | undefined;
  return async (name: string) => {
    if (cached?.name === name) return cached.model;
    const files = listCheckpoints(runDir);
    const hit = CHECKPOINT_NAME.test(name) ? files.find((f) => basename(f.file) === name) : undefined;
    if (!hit) {
      throw new AppError('ERR_CHECKPOINT_NOT_FOUND', `generate: no checkpoint named "${name}" in the run directory`, 404,
        files.length ? `available: ${files.slice(0, 5).map((f) => basename(f.file)).join(', ')}` : 'no checkpoints saved yet');
    }
    const ck = readCheckpoint(hit.file);
    const model = { config: ck.meta.model, params: ck.params, step: ck.meta.step };
    cached = { name, model };
    return model;
  };
}
