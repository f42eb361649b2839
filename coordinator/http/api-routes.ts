// Read-only API: /healthz, /api/status, /api/history, /api/plan.

import { Router } from 'express';
import { AppError } from '../../shared/errors.ts';
import { planWorker } from '../../shared/memory/plan.ts';
import { plannedMicroBatchCap } from '../config.ts';
import { parseBytes } from '../../shared/memory/units.ts';
import { toWirePlan } from '../server/wire-plan.ts';
import type { CoordinatorContext } from './context.ts';

export function apiRouter(ctx: CoordinatorContext): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ ok: true, step: ctx.trainer.step, workers: ctx.hub.workers.connected().length });
  });
  r.get('/api/status', (_req, res) => {
    res.json(ctx.status());
  });
  r.get('/api/history', (_req, res) => {
    const points = ctx.trainer.history;
    res.json({
      points,
      evals: ctx.evals(),
      // Column form for charts (uPlot wants arrays).
      step: points.map((p) => p.step),
      loss: points.map((p) => p.loss),
      lr: points.map((p) => p.lr),
      tokensPerSec: points.map((p) => p.tokensPerSec),
      evalAccuracy: points.map((p) => p.evalAccuracy ?? null),
      evalLoss: points.map((p) => p.evalLoss ?? null),
    });
  });
  // The cluster plan: every worker's plan, plus (with ?memory=2GiB[&maxBufferSize=..&maxStorageBufferBindingSize=..])
  // what a worker with those resources would get.
  r.get('/api/plan', (req, res) => {
    const q = req.query;
    const bytes = (name: string): number | undefined => {
      const v = q[name];
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw new AppError('ERR_BAD_QUERY', `GET /api/plan: ${name} must be one value`, 400);
      return parseBytes(v, name);
    };
    const memory = bytes('memory');
    const maxBufferSize = bytes('maxBufferSize');
    const maxStorageBufferBindingSize = bytes('maxStorageBufferBindingSize');
    const model = ctx.trainer.model;
    const workers = [...ctx.hub.workers.byId.values()].filter((w) => w.socket).map((w) => ({ id: w.id, backend: w.hello.backend, plan: w.plan }));
    const replicas = workers.filter((w) => w.plan.role === 'replica');
    res.json({
      preset: ctx.preset,
      model,
      params: ctx.trainer.paramCount,
      seqLen: ctx.seqLen,
      globalBatch: ctx.config.globalBatch,
      bytesPerParam: { train: 20, weights: 4, gradients: 4, optimizer: 8, activations: 4 },
      workers,
      totals: {
        workers: workers.length,
        replicas: replicas.length,
        budgetBytes: workers.reduce((a, w) => a + w.plan.budgetBytes, 0),
        microBatchSum: replicas.reduce((a, w) => a + w.plan.microBatch, 0),
      },
      ...(memory !== undefined || maxBufferSize !== undefined || maxStorageBufferBindingSize !== undefined
        ? { example: toWirePlan(planWorker(model, { userCapBytes: memory, maxBufferSize, maxStorageBufferBindingSize }, { seqLen: ctx.seqLen, maxMicroBatch: plannedMicroBatchCap(ctx.config) })) }
        : {}),
    });
  });
  return r;
}
