// Preference pairs as training data (--objective dpo, docs/dpo.md). Rows come from
// preference-rows.ts (validation, file:line errors); here they become a dataset: sample ids are
// PAIRS (the epoch sampler, the exactly-once ledger and checkpoints count pairs), and a lease's
// micro-batch holds two rows per pair, chosen then rejected, each `[prompt bytes, response bytes,
// EOS]` with the loss mask on the response and the EOS (as instruction rows, sequences.ts).
//
// Held-out: a seeded random 5% of the pairs (at most 200, at least 1 when there are 20 or more),
// as for instruction files (files.ts). A pair that does not fit T positions is an error naming
// its `file:line` (truncating would cut the part where the two answers differ).

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { MicroBatch } from '../backend.ts';
import { AppError, isAppError } from '../errors.ts';
import { Rng } from '../rng.ts';
import { HELD_OUT_FRACTION, HELD_OUT_MAX } from './files.ts';
import { parsePreferenceJsonl, type PreferenceRow } from './preference-rows.ts';
import { buildMicroBatch, checkSampleId, fnv1a, pairRow } from './sequences.ts';
import type { Dataset, SampleSource, SequenceSample } from './types.ts';

export interface PreferenceDataset extends Dataset {
  /** Marks the dataset as pairs: `sample(id)` is pair id's CHOSEN row; train with pairBatch. */
  readonly preference: true;
  readonly train: PreferenceRow[];
  readonly held: PreferenceRow[];
  /** Rows 2i (chosen) and 2i+1 (rejected) of the given pair ids, one MicroBatch. */
  pairBatch(ids: ArrayLike<number>, split?: 'train' | 'heldOut'): MicroBatch;
  /** Lines skipped while reading (a torn last line of the collected file). */
  warnings: string[];
}

/** A dataset of the given rows; `lineOf(i)` names row i's source line in errors. */
export function preferenceDataset(
  rows: PreferenceRow[], name: string, opts: { T: number; seed: number; lineOf?: (i: number) => string; warnings?: string[] },
): PreferenceDataset {
  const { T, seed } = opts;
  if (rows.length === 0) {
    throw new AppError('ERR_DATA_EMPTY', `preference data ${name}: no pairs`, 400,
      'give at least one {"prompt","chosen","rejected"} line (or collect some in the playground\'s Compare mode)');
  }
  const enc = (i: number, which: 'chosen' | 'rejected'): SequenceSample => {
    try {
      return pairRow(rows[i].prompt, rows[i][which], T);
    } catch (e) {
      if (isAppError(e)) throw new AppError(e.code, `preference data ${opts.lineOf?.(i) ?? `${name} row ${i + 1}`}: ${which}: ${e.message}`, 400);
      throw e;
    }
  };
  // Every row is tokenized once up front: a pair that does not fit stops the start, not a step.
  const encoded = rows.map((_, i) => ({ chosen: enc(i, 'chosen'), rejected: enc(i, 'rejected') }));
  const n = rows.length;
  const hold = n >= 20 ? Math.min(HELD_OUT_MAX, Math.max(1, Math.floor(n * HELD_OUT_FRACTION))) : 0;
  const order = Array.from({ length: n }, (_, i) => i);
  new Rng(seed).shuffle(order);
  const heldIdx = new Set(order.slice(0, hold));
  const trainIdx = order.filter((i) => !heldIdx.has(i)).sort((a, b) => a - b);
  const heldList = [...heldIdx].sort((a, b) => a - b);
  const source = (idx: number[], label: string): SampleSource => ({
    size: idx.length,
    sample(id) {
      checkSampleId(id, idx.length, label);
      return encoded[idx[id]].chosen;
    },
  });
  const pairRows = (idx: number[], label: string): SampleSource => ({
    size: 2 * idx.length,
    sample(r) {
      checkSampleId(r, 2 * idx.length, label);
      const p = encoded[idx[r >> 1]];
      return r & 1 ? p.rejected : p.chosen;
    },
  });
  const trainPairs = pairRows(trainIdx, name);
  const heldPairs = pairRows(heldList, `${name} held-out`);
  return {
    name,
    kind: 'instruction',
    preference: true,
    T,
    ...source(trainIdx, name),
    fingerprint: fnv1a(['preference', name, String(T), String(seed), ...rows.flatMap((r) => [r.prompt, r.chosen, r.rejected])]),
    heldOut: source(heldList, `${name} held-out`),
    train: trainIdx.map((i) => rows[i]),
    held: heldList.map((i) => rows[i]),
    warnings: opts.warnings ?? [],
    pairBatch(ids, split = 'train') {
      const src = split === 'train' ? trainPairs : heldPairs;
      const rowIds: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        checkSampleId(ids[i], src.size / 2, split === 'train' ? name : `${name} held-out`);
        rowIds.push(2 * ids[i], 2 * ids[i] + 1);
      }
      return buildMicroBatch(src, rowIds);
    },
  };
}

/**
 * Reads a JSONL file of preference rows. `collected`: the run's own preferences.jsonl (appended
 * by POST /api/preferences), whose torn last line (a crash mid-append) is skipped with a warning.
 */
export function loadPreferenceFile(path: string, opts: { T: number; seed: number; collected?: boolean }): PreferenceDataset {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new AppError('ERR_DATA_FILE', `preference data ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, 400,
      opts.collected ? 'no preferences collected yet: rate samples in the playground\'s Compare mode first' : 'pass an existing .jsonl file of {"prompt","chosen","rejected"} lines to --data');
  }
  const parsed = parsePreferenceJsonl(text, path, { tornLastLine: opts.collected ? 'skip' : 'error' });
  // Line numbers of the parsed rows, for errors found after parsing (a pair too long for T).
  const lines: number[] = [];
  text.split('\n').forEach((l, i) => {
    if (l.trim() !== '') lines.push(i + 1);
  });
  return preferenceDataset(parsed.rows, basename(path), { T: opts.T, seed: opts.seed, lineOf: (i) => `${path}:${lines[i]}`, warnings: parsed.warnings });
}

export function isPreferenceDataset(d: Dataset): d is PreferenceDataset {
  return (d as Partial<PreferenceDataset>).preference === true;
}
