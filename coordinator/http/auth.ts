// Bearer-token check for admin routes: constant-time comparison (security/token.ts: SHA-256
// digests, so the token length leaks nothing either). 401 with ERR_UNAUTHORIZED otherwise.

import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../../shared/errors.ts';
import { tokenMatches } from '../security/token.ts';

export function requireBearer(token: string) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    const h = req.get('authorization') ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (!m || !tokenMatches(m[1].trim(), token)) {
      next(new AppError('ERR_UNAUTHORIZED', `${req.method} ${req.path}: missing or wrong admin token`, 401,
        'send "Authorization: Bearer <token>" with the token printed at coordinator start (--admin-token / ADMIN_TOKEN)'));
      return;
    }
    next();
  };
}
