// POST /api/simulate: the memory simulator (shared/memory/simulate.ts) over HTTP, same inputs as
// `npm run simulate` as JSON (zod, strict). 200 with the result; 400 {error:{code,message,hint}}
// on invalid input. Mount with app.use(simulateRouter()). Answers its own errors, so it also works
// on a bare express app; CPU work is bounded by the simulator's own limits (e.g. MAX_CHURN_WORK).

import express, { type Request, type Response, type Router } from 'express';
import { AppError } from '../../shared/errors.ts';
import { simulate } from '../../shared/memory/simulate.ts';
import { errorHandler, type ErrorLog } from './errors.ts';

export function simulateRouter(log?: ErrorLog): Router {
  const r = express.Router();
  r.post('/api/simulate', express.json({ limit: '64kb' }), (req: Request, res: Response) => {
    if (req.body === undefined || req.body === null || typeof req.body !== 'object' || Array.isArray(req.body)) {
      throw new AppError('ERR_SIMULATE_INPUT', 'POST /api/simulate: body must be a JSON object', 400,
        'send Content-Type: application/json, e.g. {"model":"gpt2","cluster":"4x8GiB"}');
    }
    res.json(simulate(req.body));
  });
  r.use('/api/simulate', errorHandler(log, {
    bodyLimit: '64 kB',
    // The simulator's own input errors are the client's: 400, not 500.
    translate: (err) => ((err as { code?: string }).code === 'ERR_MODEL_CONFIG' ? new AppError('ERR_SIMULATE_INPUT', (err as Error).message, 400) : undefined),
  }));
  return r;
}
