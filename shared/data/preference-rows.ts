// Preference pairs (issue 16, DPO): one `{prompt, chosen, rejected}` per JSONL line, shared by
// the coordinator's collected `preferences.jsonl` (append-only, written by POST /api/preferences)
// and `--objective dpo --data FILE.jsonl` (training rows).
//
// Rules:
//  - prompt, chosen, rejected: non-empty strings, each at most PREFERENCE_FIELD_MAX_CHARS characters;
//    chosen !== rejected (a pair that prefers an answer to itself teaches nothing).
//  - optional step (integer >= 0) and createdAt (ISO string) are kept when present; other fields ignored.
//  - A file: blank lines skipped, CRLF accepted. A bad line is an error naming `file:line` and the
//    field, EXCEPT an unparseable LAST line when `tornLastLine: 'skip'` (a crash mid-append, the
//    collected file): that line is skipped and reported in `warnings`, nothing else is lost.

import { AppError } from '../errors.ts';

export const PREFERENCE_FIELD_MAX_CHARS = 4000;

export interface PreferenceRow {
  prompt: string;
  chosen: string;
  rejected: string;
  /** Training step of the model that produced the samples (collected rows). */
  step?: number;
  /** ISO time the row was recorded (collected rows). */
  createdAt?: string;
}

export interface PreferenceParse {
  rows: PreferenceRow[];
  /** Human sentences for lines that were skipped (a torn last line). */
  warnings: string[];
}

/** The field that is wrong and why, or undefined when the object is a valid row. */
export function preferenceRowProblem(v: unknown): { field: string; message: string } | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    return { field: '(row)', message: 'must be a JSON object {"prompt","chosen","rejected"}' };
  }
  const o = v as Record<string, unknown>;
  for (const f of ['prompt', 'chosen', 'rejected'] as const) {
    const s = o[f];
    if (typeof s !== 'string') return { field: f, message: `must be a string, got ${s === undefined ? 'nothing' : typeof s}` };
    if (s.length === 0) return { field: f, message: 'must not be empty' };
    if (s.length > PREFERENCE_FIELD_MAX_CHARS) {
      return { field: f, message: `has ${s.length} characters, at most ${PREFERENCE_FIELD_MAX_CHARS} allowed` };
    }
  }
  if (o.chosen === o.rejected) return { field: 'rejected', message: 'equals chosen (a pair must differ)' };
  if (o.step !== undefined && !(Number.isInteger(o.step) && (o.step as number) >= 0)) {
    return { field: 'step', message: `must be an integer >= 0, got ${JSON.stringify(o.step)}` };
  }
  if (o.createdAt !== undefined && (typeof o.createdAt !== 'string' || Number.isNaN(Date.parse(o.createdAt)))) {
    return { field: 'createdAt', message: `must be an ISO date string, got ${JSON.stringify(o.createdAt)}` };
  }
  return undefined;
}

/** Validates one row; throws ERR_PREFERENCE_ROW naming `where` and the field. Returns a clean copy. */
export function checkPreferenceRow(v: unknown, where: string): PreferenceRow {
  const p = preferenceRowProblem(v);
  if (p) {
    throw new AppError('ERR_PREFERENCE_ROW', `${where}: ${p.field} ${p.message}`, 400,
      'each row is {"prompt": string, "chosen": string, "rejected": string} with chosen != rejected');
  }
  const o = v as Record<string, unknown>;
  const row: PreferenceRow = { prompt: o.prompt as string, chosen: o.chosen as string, rejected: o.rejected as string };
  if (o.step !== undefined) row.step = o.step as number;
  if (o.createdAt !== undefined) row.createdAt = o.createdAt as string;
  return row;
}

/**
 * Parses JSONL text of preference rows. `file` names the source in errors (`file:line`).
 * With `tornLastLine: 'skip'`, a last line that is not valid JSON is skipped with a warning.
 */
export function parsePreferenceJsonl(
  text: string, file: string, opts: { tornLastLine?: 'skip' | 'error' } = {},
): PreferenceParse {
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  // The last non-blank line (a torn append has no trailing newline, but check by content).
  let lastIdx = -1;
  for (let i = lines.length - 1; i >= 0; i--) if (lines[i].trim() !== '') { lastIdx = i; break; }
  const rows: PreferenceRow[] = [];
  const warnings: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, '');
    if (line.trim() === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      if (i === lastIdx && opts.tornLastLine === 'skip') {
        warnings.push(`${file}:${i + 1}: skipped a torn last line (${line.length} bytes; a crash during an append)`);
        continue;
      }
      throw new AppError('ERR_PREFERENCE_ROW', `${file}:${i + 1}: not valid JSON (${(e as Error).message})`, 400,
        'one JSON object per line: {"prompt": ..., "chosen": ..., "rejected": ...}');
    }
    rows.push(checkPreferenceRow(v, `${file}:${i + 1}`));
  }
  return { rows, warnings };
}
