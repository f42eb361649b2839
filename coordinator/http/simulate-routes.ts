// POST /api/simulate: the memory simulator (shared/memory/simulate.ts) over HTTP, same inputs as
// `npm run simulate` as JSON (zod, strict). 200 with the result; 400 {error:{code,message,hint}}
// on invalid input. Mount with app.use(simulateRouter()). Answers its own errors, so it also works
// on a bare express app; CPU work is bounded by the simulator's own limits (e.g. MAX_CHURN_WORK).

import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { AppError, isAppError } from '../../shared/errors.ts';
import { simulate } from '../../shared/memory/simulate.ts';

export function simulateRouter(): Router {
  const r = express.Router();
  r.post('/api/simulate', express.json({ limit: '64kb' }), (req: Request, res: Response) => {
    if (req.body === undefined || req.body === null || typeof req.body !== 'object' || Array.isArray(req.body)) {
      throw new AppError('ERR_SIMULATE_INPUT', 'POST /api/simulate: body must be a JSON object', 400,
        'send Content-Type: application/json, e.g. {"model":"gpt2","cluster":"4x8GiB"}');
    }
    res.json(simulate(req.body));
  });
  r.use('/api/simulate', (err: unknown, req: Request, res: Response, next: NextFunction) => {
    let e: AppError | undefined;
    if (isAppError(err)) e = err;
    else if ((err as { code?: string }).code === 'ERR_MODEL_CONFIG') e = new AppError('ERR_SIMULATE_INPUT', (err as Error).message, 400);
    else if ((err as { type?: string }).type === 'entity.parse.failed') {
      e = new AppError('ERR_BAD_JSON', `${req.method} ${req.originalUrl}: request body is not valid JSON`, 400, 'send Content-Type: application/json with a JSON body');
    } else if ((err as { type?: string }).type === 'entity.too.large') {
      e = new AppError('ERR_TOO_LARGE', `${req.method} ${req.originalUrl}: request body too large (64 kB max)`, 413);
    }
    if (!e) return next(err);
    res.status(e.status).json(e.toJSON());
  });
  return r;
}
