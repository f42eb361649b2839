// Prometheus metrics (prom-client), in a registry of their own so several coordinators can run
// in one process (tests). Gauges read the live state at scrape time; counters follow the bus.

import { Router } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CoordinatorContext } from './context.ts';

export function metricsRouter(ctx: CoordinatorContext): Router {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'vt_process_' });
  const g = (name: string, help: string, read: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  g('vt_step', 'optimizer steps completed', () => ctx.trainer.step);
  g('vt_epoch', 'current data epoch', () => ctx.trainer.epoch);
  g('vt_loss', 'training loss of the last step', () => ctx.trainer.lastLoss ?? NaN);
  g('vt_lr', 'learning rate of the next step', () => ctx.trainer.lr());
  g('vt_tokens_per_second', 'trained tokens per second (last step)', () => ctx.trainer.history.at(-1)?.tokensPerSec ?? 0);
  g('vt_samples_trained', 'samples trained since the run began', () => ctx.trainer.samplesTrained);
  g('vt_tokens_trained', 'tokens trained since the run began', () => ctx.trainer.tokensTrained);
  g('vt_samples_doubled', 'samples trained twice in an epoch (must be 0)', () => ctx.trainer.doubled);
  g('vt_workers_connected', 'connected workers', () => ctx.hub.workers.connected().length);
  g('vt_workers_replicas', 'connected data-parallel replica workers', () => ctx.hub.workers.replicas().length);
  g('vt_paused', '1 while paused by an admin', () => (ctx.hub.paused ? 1 : 0));
  const rejects = new Counter({ name: 'vt_rejections_total', help: 'rejected worker messages by code', labelNames: ['code'], registers: [registry] });
  const steps = new Histogram({ name: 'vt_step_seconds', help: 'wall time per optimizer step', registers: [registry], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60] });
  const ckpts = new Counter({ name: 'vt_checkpoints_total', help: 'checkpoints written', registers: [registry] });
  ctx.bus.on('reject', (e) => rejects.inc({ code: e.code }));
  ctx.bus.on('step', (p) => steps.observe(p.stepMs / 1000));
  ctx.bus.on('checkpoint', () => ckpts.inc());

  const r = Router();
  r.get('/metrics', async (_req, res) => {
    res.set('Content-Type', registry.contentType);
    res.send(await registry.metrics());
  });
  return r;
}
