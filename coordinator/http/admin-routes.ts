// Admin actions behind the bearer token: pause, resume, checkpoint, kick/:workerId. In a --redis
// run they work from any process: pause/resume reach the leader through Redis, a kick reaches the
// process the worker is connected to.

import { Router } from 'express';
import { AppError } from '../../shared/errors.ts';
import { requireBearer } from './auth.ts';
import type { CoordinatorContext } from './context.ts';

export function adminRouter(ctx: CoordinatorContext): Router {
  const r = Router();
  r.use('/api/admin', requireBearer(ctx.adminToken));
  r.post('/api/admin/pause', async (_req, res) => {
    const cluster = ctx.cluster?.();
    if (cluster) await cluster.admin('pause');
    else ctx.hub.pause();
    ctx.bus.emit('admin', { action: 'pause' });
    res.json({ paused: true, step: ctx.trainer.step });
  });
  r.post('/api/admin/resume', async (_req, res) => {
    const cluster = ctx.cluster?.();
    if (cluster) await cluster.admin('resume');
    else ctx.hub.resume();
    ctx.bus.emit('admin', { action: 'resume' });
    res.json({ paused: false, step: ctx.trainer.step });
  });
  r.post('/api/admin/checkpoint', (_req, res) => {
    const c = ctx.checkpointNow('admin');
    res.json(c);
  });
  r.post('/api/admin/kick/:workerId', async (req, res) => {
    const id = String(req.params.workerId);
    const cluster = ctx.cluster?.();
    if (!(cluster ? await cluster.kick(id) : ctx.hub.kick(id))) {
      throw new AppError('ERR_NO_SUCH_WORKER', `POST /api/admin/kick: no connected worker "${id.slice(0, 64)}"`, 404, 'see GET /api/status for worker ids');
    }
    ctx.bus.emit('admin', { action: 'kick', workerId: id });
    res.json({ kicked: id });
  });
  return r;
}
