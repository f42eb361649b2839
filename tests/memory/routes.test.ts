import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { simulateRouter } from '../../coordinator/http/simulate-routes.ts';

let server: Server;
let base = '';

beforeAll(async () => {
  const app = express();
  app.use(simulateRouter());
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const post = (body: string) => fetch(`${base}/api/simulate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

describe('POST /api/simulate', () => {
  it('answers the same plan as the CLI for a model and a cluster', async () => {
    const r = await post(JSON.stringify({ model: 'gpt2', seq: 256, cluster: '2x8GiB,2x2GiB,1x1GiB', leave: [0], churn: { meanSession: '4h', trials: 2, seed: 5 } }));
    expect(r.status).toBe(200);
    const j = await r.json();
    expect(j).toMatchObject({ params: 124_439_808, mode: 'train', precision: 'fp32', bytesPerParam: 20, totalBytes: 124_439_808 * 20 });
    expect(j.cluster).toMatchObject({ devices: 5, fits: true, replicas: 2, pipelines: 1 });
    expect(j.cluster.assignments[0].reason).toMatch(/whole model/);
    expect(j.change.after.replicas).toBe(1);
    expect(j.churn.trials).toBe(2);
    expect(j.churn.coveredShare).toBeGreaterThanOrEqual(0);
  });

  it.each([
    ['{"model":"gpt5"}', 'ERR_MEMORY_MODEL'],
    ['{"params":-1}', 'ERR_SIMULATE_INPUT'],
    ['{"model":"gpt2","cluster":"12xGB"}', 'ERR_MEMORY_DEVICES'],
    ['{"model":"gpt2","colour":"red"}', 'ERR_SIMULATE_INPUT'],
    ['{"model":"gpt2",', 'ERR_BAD_JSON'],
    ['[1,2]', 'ERR_SIMULATE_INPUT'],
  ])('400 on %s', async (body, code) => {
    const r = await post(body);
    expect(r.status).toBe(400);
    const j = await r.json();
    expect(j.error.code).toBe(code);
    expect(j.error.message.length).toBeGreaterThan(10);
  });
});
