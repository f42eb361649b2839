// One error handler for the HTTP API: AppError -> its status and {error: {code, message, hint}};
// malformed JSON -> 400 ERR_BAD_JSON; anything else -> 500 ERR_INTERNAL (logged, not leaked).

import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import { AppError, isAppError } from '../../shared/errors.ts';

export function notFound(req: Request, _res: Response, next: NextFunction): void {
  next(new AppError('ERR_NOT_FOUND', `${req.method} ${req.path}: no such endpoint`, 404, 'see docs/operations.md for the API'));
}

export function errorHandler(log: Logger) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    let e: AppError;
    if (isAppError(err)) e = err;
    else if ((err as { type?: string }).type === 'entity.parse.failed') {
      e = new AppError('ERR_BAD_JSON', `${req.method} ${req.path}: request body is not valid JSON`, 400, 'send Content-Type: application/json with a JSON body');
    } else if ((err as { type?: string }).type === 'entity.too.large') {
      e = new AppError('ERR_TOO_LARGE', `${req.method} ${req.path}: request body too large`, 413);
    } else {
      log.error({ err, path: req.path }, 'unhandled error');
      e = new AppError('ERR_INTERNAL', `${req.method} ${req.path}: internal error`, 500, 'see the coordinator log');
    }
    if (e.status >= 500) log.error({ code: e.code, path: req.path }, e.message);
    if (res.headersSent) return;
    res.status(e.status).json(e.toJSON());
  };
}
