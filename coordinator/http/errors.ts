// The one error handler of the HTTP API, used by the app and by every router that must answer its
// own errors (so it also works mounted on a bare express app): AppError -> its status and
// {error: {code, message, hint}}; malformed JSON -> 400 ERR_BAD_JSON; a body over the limit -> 413;
// anything else -> 500 with a generic message. Internal error text never reaches the client: it is
// logged. Routers keep the codes they always answered with (options below).

import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import { AppError, isAppError } from '../../shared/errors.ts';

/** Where 500s are logged: the coordinator's pino logger, or stderr for a router used alone. */
export type ErrorLog = Pick<Logger, 'error'>;

const STDERR_LOG: ErrorLog = {
  error: ((obj: unknown, msg?: string) => {
    const err = (obj as { err?: unknown })?.err;
    process.stderr.write(`${msg ?? 'error'}${err ? `: ${(err as Error)?.stack ?? String(err)}` : ''}\n`);
  }) as ErrorLog['error'],
};

export interface ErrorOptions {
  /** Names the request in messages (default: "METHOD /path"). */
  where?: string;
  /** Code of a too-large body (default ERR_TOO_LARGE; the generation routes answer ERR_BODY_TOO_LARGE). */
  tooLargeCode?: string;
  /** The body limit, named in the 413 message (e.g. "2 MB"). */
  bodyLimit?: string;
  /** Code of an unexpected error (default ERR_INTERNAL; the export routes answer ERR_EXPORT). */
  internalCode?: string;
  /** Turn a router's own non-AppError into an AppError (e.g. invalid simulator input -> 400). */
  translate?(err: unknown): AppError | undefined;
}

export function notFound(req: Request, _res: Response, next: NextFunction): void {
  next(new AppError('ERR_NOT_FOUND', `${req.method} ${req.path}: no such endpoint`, 404, 'see docs/operations.md for the API'));
}

/** Any thrown value as the AppError to answer with; an unexpected one is logged, not leaked. */
export function asAppError(err: unknown, where: string, log: ErrorLog = STDERR_LOG, o: ErrorOptions = {}): AppError {
  if (isAppError(err)) return err;
  const translated = o.translate?.(err);
  if (translated) return translated;
  const type = (err as { type?: string } | null)?.type;
  if (type === 'entity.parse.failed') {
    return new AppError('ERR_BAD_JSON', `${where}: request body is not valid JSON (${(err as Error).message})`, 400, 'send Content-Type: application/json with a JSON body');
  }
  if (type === 'entity.too.large') {
    return new AppError(o.tooLargeCode ?? 'ERR_TOO_LARGE', `${where}: request body too large${o.bodyLimit ? ` (${o.bodyLimit} max)` : ''}`, 413);
  }
  log.error({ err, where }, 'unhandled error');
  return new AppError(o.internalCode ?? 'ERR_INTERNAL', `${where}: internal error`, 500, 'see the coordinator log');
}

export function errorHandler(log: ErrorLog = STDERR_LOG, o: ErrorOptions = {}) {
  return (err: unknown, req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) return next(err);
    const e = asAppError(err, o.where ?? `${req.method} ${req.path}`, log, o);
    if (e.status >= 500) log.error({ code: e.code, path: req.path }, e.message);
    res.status(e.status).json(e.toJSON());
  };
}
