// Bearer-token check for admin routes: constant-time comparison (of SHA-256 digests, so the
// token length leaks nothing either). 401 with ERR_UNAUTHORIZED otherwise.

import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../../shared/errors.ts';

export function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

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
