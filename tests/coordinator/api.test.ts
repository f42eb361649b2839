// HTTP API and admin endpoints against a real in-process coordinator; protocol rejections from a
// raw socket.io client sending bad messages (each gets its named code and changes nothing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import type { RejectMsg, TaskMsg, WelcomeMsg } from '../../shared/protocol/messages.ts';
import { startTestWorker, until, type TestWorker } from './test-worker.ts';

const TOKEN = 'admin-secret-for-tests';
let c: CoordinatorHandle;
let dir: string;
const closers: Array<() => void> = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'coord-api-'));
  c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: 8, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', adminToken: TOKEN, resume: false,
    // This file sends bursts of bad messages on purpose and checks each one's code: no rate limit,
    // no random re-computation (hardening has its own tests).
    rateLimit: 10_000, verifyRate: 0 });
});
afterAll(async () => {
  closers.forEach((f) => f());
  await c.close();
  rmSync(dir, { recursive: true, force: true });
});

const post = (path: string, auth?: string) =>
  fetch(c.url + path, { method: 'POST', headers: auth === undefined ? {} : { authorization: auth } });

describe('admin endpoints', () => {
  it('refuse a missing or wrong token with 401 and change nothing', async () => {
    for (const auth of [undefined, 'Bearer wrong-token', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, 'Bearer ']) {
      for (const path of ['/api/admin/pause', '/api/admin/resume', '/api/admin/checkpoint', '/api/admin/kick/w1']) {
        const r = await post(path, auth);
        expect(r.status, `${path} with ${auth}`).toBe(401);
        expect((await r.json()).error.code).toBe('ERR_UNAUTHORIZED');
      }
    }
    expect(c.hub.paused).toBe(false);
    expect(c.ctx.status().checkpoint).toBeNull();
  });

  it('pause, resume, checkpoint and kick work with the token', async () => {
    const auth = `Bearer ${TOKEN}`;
    expect((await (await post('/api/admin/pause', auth)).json()).paused).toBe(true);
    expect(c.ctx.status().paused).toBe(true);
    const w = startTestWorker(c.url, { name: 'k' });
    closers.push(() => w.close());
    await w.welcome;
    await until(() => w.waits.some((m) => m.code === 'paused'), 5000, 'paused wait');
    expect(w.tasks).toHaveLength(0);
    expect((await (await post('/api/admin/resume', auth)).json()).paused).toBe(false);
    await until(() => c.trainer.step >= 2, 20_000, 'steps after resume');
    const ck = await (await post('/api/admin/checkpoint', auth)).json();
    expect(ck.file).toMatch(/ckpt-\d{9}\.vtc$/);
    const kick = await post(`/api/admin/kick/${w.id()}`, auth);
    expect(kick.status).toBe(200);
    await until(() => c.ctx.status().workers.some((x) => x.id === w.id() && x.state === 'kicked'), 5000, 'kicked');
    const missing = await post('/api/admin/kick/nobody', auth);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('ERR_NO_SUCH_WORKER');
  });

  it('health, plan and unknown routes', async () => {
    expect((await (await fetch(c.url + '/healthz')).json()).ok).toBe(true);
    const plan = await (await fetch(c.url + '/api/plan?memory=64MiB')).json();
    expect(plan.params).toBe(c.trainer.paramCount);
    expect(plan.example.role).toBe('replica');
    expect(plan.example.budgetBytes).toBe(64 * 2 ** 20);
    const bad = await fetch(c.url + '/api/plan?memory=lots');
    expect(bad.status).toBe(400);
    const nf = await fetch(c.url + '/api/nope');
    expect(nf.status).toBe(404);
    expect((await nf.json()).error.code).toBe('ERR_NOT_FOUND');
  });
});

describe('protocol rejections', () => {
  function raw(): Socket {
    const s = io(c.url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true });
    closers.push(() => s.close());
    return s;
  }
  const nextReject = (s: Socket, what = '') =>
    new Promise<RejectMsg>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reject within 5 s ${what}`)), 5000);
      s.once('reject', (m: RejectMsg) => {
        clearTimeout(t);
        resolve(m);
      });
    });

  it('refuse bad hello, results before hello, and malformed or foreign results', async () => {
    const s = raw();
    let rej = nextReject(s);
    s.emit('result', { taskId: 'x' });
    expect((await rej).code).toBe('NOT_WELCOMED');
    rej = nextReject(s, 'PROTOCOL_VERSION');
    s.emit('hello', { protocol: 99, backend: 'cpu', adapter: { vendor: '', architecture: '', description: '', isSoftware: true }, limits: {} });
    expect((await rej).code).toBe('PROTOCOL_VERSION');
    rej = nextReject(s);
    s.emit('hello', { protocol: 1, backend: 'tpu', adapter: {}, limits: {} });
    expect((await rej).code).toBe('BAD_SCHEMA');

    // A proper hello; pause first so that the task we get stays ours while we misbehave.
    await post('/api/admin/pause', `Bearer ${TOKEN}`);
    const welcome = new Promise<WelcomeMsg>((r) => s.once('welcome', r));
    s.emit('hello', { protocol: 1, backend: 'cpu', adapter: { vendor: 'v', architecture: 'a', description: 'raw <b>client</b>', isSoftware: false }, limits: {}, userCapBytes: 2 ** 30 });
    const w = await welcome;
    expect(w.paramCount).toBe(c.trainer.paramCount);
    const task = new Promise<TaskMsg>((r) => s.once('task', r));
    await post('/api/admin/resume', `Bearer ${TOKEN}`);
    const t = await task;
    const P = w.paramCount;
    const good = () => ({ taskId: t.taskId, step: t.step, version: t.version, loss: 1, tokens: t.tokens, grads: new Float32Array(P), gradNorm: 0, nonFinite: 0, timings: { totalMs: 1 } });
    const cases: Array<[string, Record<string, unknown>]> = [
      ['BAD_LENGTH', { ...good(), grads: new Float32Array(P - 1) }],
      ['BAD_SCHEMA', { ...good(), grads: Array.from({ length: 4 }, () => 0) }],
      ['NON_FINITE', { ...good(), grads: Object.assign(new Float32Array(P), { 7: NaN }) }],
      ['NON_FINITE', { ...good(), loss: Infinity }],
      ['OUT_OF_RANGE', { ...good(), loss: -1 }],
      ['UNKNOWN_TASK', { ...good(), taskId: 'forged.1.1' }],
      ['STALE_VERSION', { ...good(), version: t.version + 1 }],
      ['WRONG_STEP', { ...good(), step: t.step + 5 }],
      ['TOKENS_MISMATCH', { ...good(), tokens: t.tokens + 1 }],
    ];
    const stepBefore = c.trainer.step;
    const trainedBefore = c.trainer.samplesTrained;
    for (const [code, msg] of cases) {
      rej = nextReject(s, `for the ${code} case`);
      s.emit('result', msg);
      expect((await rej).code, code).toBe(code);
    }
    expect(c.trainer.step).toBe(stepBefore);
    expect(c.trainer.samplesTrained).toBe(trainedBefore);
    const row = c.ctx.status().workers.find((x) => x.id === w.workerId)!;
    expect(row.rejectedByCode).toMatchObject({ BAD_LENGTH: 1, NON_FINITE: 2, UNKNOWN_TASK: 1, STALE_VERSION: 1, TOKENS_MISMATCH: 1 });
    expect(row.adapter).toBe('raw <b>client</b>'); // kept as text; rendering escapes it
    // The real answer is still accepted after all that; a second copy is a DUPLICATE.
    const ack = new Promise<{ taskId: string }>((r) => s.once('ack', r));
    s.emit('result', good());
    expect((await ack).taskId).toBe(t.taskId);
    rej = nextReject(s, 'DUPLICATE');
    s.emit('result', good());
    expect((await rej).code).toBe('DUPLICATE');
    const metrics = await (await fetch(c.url + '/metrics')).text();
    expect(metrics).toMatch(/vt_rejections_total\{code="BAD_LENGTH"\} 1/);
  });
});
