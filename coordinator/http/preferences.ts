// The preference-collection API (issue 16; docs/preferences.md):
//   POST /api/preferences         {prompt, chosen, rejected} -> 201 {count, row}; the row is on disk
//                                 (fsync'd) before the answer; step = the trainer's step now
//   GET  /api/preferences         ?offset=0&limit=50 (limit capped at 500) -> {count, offset, limit, rows}
//   GET  /api/preferences.jsonl   the file itself (application/x-ndjson, attachment)
// Bad input is a 400 naming the field and stores nothing; a client over its budget gets 429.

import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { createReadStream } from 'node:fs';
import { AppError } from '../../shared/errors.ts';
import { checkPreferenceRow } from '../../shared/data/preference-rows.ts';
import type { PreferenceStore } from '../preferences/store.ts';
import { ClientRateLimit } from './client-rate.ts';
import { errorHandler, type ErrorLog } from './errors.ts';

export const PREFERENCES_DEFAULT_LIMIT = 50;
export const PREFERENCES_MAX_LIMIT = 500;
/** Three fields of at most 4000 characters, even fully \u-escaped, fit well under this. */
const BODY_LIMIT = '128kb';
const FIELDS = ['prompt', 'chosen', 'rejected'];

export interface PreferencesContext {
  store: PreferenceStore;
  /** The trainer's optimizer step now (recorded with each row). */
  step(): number;
  /** POSTs per minute per client address (--preference-rate). */
  perMinute: number;
  /** Called after each stored row (the dashboard pushes the new count). */
  onRecorded?(count: number): void;
  log?: ErrorLog;
  /** The rate limiter's clock in ms (default Date.now; tests pass a fixed one). */
  clock?(): number;
}

const WHERE_POST = 'POST /api/preferences';

/** The body as a row to store, or a 400 naming the field. Server-set fields are refused, not overwritten. */
export function preferenceFromBody(body: unknown): { prompt: string; chosen: string; rejected: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new AppError('ERR_BAD_REQUEST', `${WHERE_POST}: body must be a JSON object {"prompt","chosen","rejected"}`, 400, 'send Content-Type: application/json');
  }
  const extra = Object.keys(body).filter((k) => !FIELDS.includes(k));
  if (extra.length) {
    throw new AppError('ERR_BAD_REQUEST', `${WHERE_POST}: unknown field(s) ${extra.map((k) => `"${k}"`).join(', ')}`, 400,
      'send only prompt, chosen and rejected; the server records step and createdAt');
  }
  const row = checkPreferenceRow(body, WHERE_POST); // ERR_PREFERENCE_ROW: "POST /api/preferences: chosen must not be empty"
  return { prompt: row.prompt, chosen: row.chosen, rejected: row.rejected };
}

/** One non-negative integer query parameter, or a 400 naming it. */
function queryInt(req: Request, name: string, fallback: number): number {
  const v = req.query[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !/^\d{1,15}$/.test(v)) {
    throw new AppError('ERR_BAD_QUERY', `GET /api/preferences: ${name} must be one integer >= 0, got ${JSON.stringify(v)}`, 400,
      `e.g. ?offset=0&limit=${PREFERENCES_DEFAULT_LIMIT}`);
  }
  return Number(v);
}

export function preferencesRouter(ctx: PreferencesContext): Router {
  const r = express.Router();
  const limiter = new ClientRateLimit(ctx.perMinute, undefined, ctx.clock);
  const json = express.json({ limit: BODY_LIMIT, type: 'application/json' });

  r.post('/api/preferences', limiter.middleware(WHERE_POST), json, async (req: Request, res: Response) => {
    const json = req.is('application/json'); // null: no body at all
    if (json === null) {
      throw new AppError('ERR_BAD_REQUEST', `${WHERE_POST}: the body is empty`, 400, 'send {"prompt": ..., "chosen": ..., "rejected": ...} as JSON');
    }
    if (json === false) {
      throw new AppError('ERR_BAD_REQUEST', `${WHERE_POST}: body must be JSON (got ${req.get('content-type') ?? 'no content type'})`, 415,
        'send Content-Type: application/json');
    }
    const row = preferenceFromBody(req.body);
    const stored = await ctx.store.append(row, ctx.step());
    ctx.onRecorded?.(stored.count);
    res.status(201).json({ count: stored.count, row: stored.row });
  });

  r.get('/api/preferences', (req: Request, res: Response) => {
    const offset = queryInt(req, 'offset', 0);
    const asked = queryInt(req, 'limit', PREFERENCES_DEFAULT_LIMIT);
    if (asked === 0) throw new AppError('ERR_BAD_QUERY', 'GET /api/preferences: limit must be >= 1', 400, `at most ${PREFERENCES_MAX_LIMIT} per page`);
    const limit = Math.min(asked, PREFERENCES_MAX_LIMIT);
    res.json({ count: ctx.store.count, offset, limit, rows: ctx.store.page(offset, limit) });
  });

  // Streams the fsync'd prefix of the file: exactly the rows counted now, whatever appends next.
  r.get('/api/preferences.jsonl', (_req: Request, res: Response, next: NextFunction) => {
    const bytes = ctx.store.committedBytes;
    res.set({
      'Content-Type': 'application/x-ndjson; charset=utf-8',
      'Content-Disposition': 'attachment; filename="preferences.jsonl"',
      'Content-Length': String(bytes),
      'X-Preference-Count': String(ctx.store.count),
    });
    if (bytes === 0) return void res.end();
    const stream = createReadStream(ctx.store.file, { start: 0, end: bytes - 1 });
    stream.on('error', (e) => (res.headersSent ? res.destroy(e) : next(e)));
    stream.pipe(res);
  });

  r.use(['/api/preferences', '/api/preferences.jsonl'], errorHandler(ctx.log, { bodyLimit: '128 kB' }));
  return r;
}
