// The security layer against a real in-process coordinator on port 0, with the product worker
// client (worker-web/client, CPU engine) as honest and lying volunteers, and raw socket.io clients
// for what no worker would send.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { CoordinatorConfigInput } from '../../coordinator/config.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import type { RejectMsg, TaskMsg, WelcomeMsg } from '../../shared/protocol/messages.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { parseFault } from '../../worker-web/client/faults.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

async function coordinator(extra: Partial<CoordinatorConfigInput> = {}): Promise<CoordinatorHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'hardening-'));
  const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: 8, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, adminToken: 'hardening-admin', maxMicroBatch: 4, ...extra });
  cleanups.push(async () => {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return c;
}

async function client(url: string, name: string, fault = 'none', joinToken?: string): Promise<WorkerClient> {
  const w = new WorkerClient({ url, host: await createNodeHost('cpu'), name, fault: parseFault(fault), seed: name.length, agent: 'hardening-test', joinToken, log: () => {} });
  await w.start();
  cleanups.push(() => w.stop('test over'));
  return w;
}

function raw(url: string, headers?: Record<string, string>): Socket {
  const s = io(url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: headers });
  cleanups.push(() => void s.close());
  return s;
}

const until = async (cond: () => boolean, ms: number, what: string) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

const rejects = (s: Socket) => {
  const got: RejectMsg[] = [];
  s.on('reject', (m: RejectMsg) => got.push(m));
  return got;
};

const hello = (extra: Record<string, unknown> = {}) => ({ protocol: 1, backend: 'cpu', adapter: { vendor: 'raw', architecture: 'x', description: 'raw', isSoftware: true }, limits: {}, userCapBytes: 2 ** 30, ...extra });

describe('verification, reputation and bans', () => {
  it('a sign-flipping worker is caught by re-computation and banned; its id cannot come back; nothing is lost', async () => {
    const c = await coordinator({ maxSteps: 5 });
    await client(c.url, 'honest-a');
    await client(c.url, 'honest-b');
    const liar = await client(c.url, 'liar', 'sign-flip');
    await until(() => c.trainer.step >= 5, 90_000, '5 steps');
    const s = c.ctx.status();
    const liarRow = s.workers.find((w) => w.name === 'liar')!;
    expect(s.security!.banned.map((b) => b.id)).toContain(liarRow.id);
    expect(liarRow.rejectedByCode.VERIFY_FAILED).toBe(2);
    expect(liarRow.state).toBe('kicked');
    expect(s.security!.mismatches).toBe(2);
    expect(s.security!.banned).toHaveLength(1);
    await liar.stoppedPromise(); // the client leaves by itself on BANNED
    expect(s.samplesTrained).toBe(5 * 8);
    expect(s.accounting.doubled).toBe(0);
    // The banned id is refused at hello, on a fresh connection.
    const r = raw(c.url);
    const got = rejects(r);
    r.emit('hello', hello({ resumeId: liarRow.id }));
    await until(() => got.length > 0, 5000, 'reject');
    expect(got[0]).toMatchObject({ event: 'hello', code: 'BANNED' });
  });

  it('a ban discards the worker\'s results already folded into the running step and re-leases them', async () => {
    for (const aggregate of ['mean', 'trimmed-mean'] as const) {
      const c = await coordinator({ aggregate, maxSteps: 1 });
      const t = c.trainer;
      const work = t.startStep()!;
      const leases = [work.lease('good', 3, Date.now(), 60_000)!, work.lease('bad', 3, Date.now(), 60_000)!];
      for (const l of leases) {
        const { tokens } = t.batchOf(l);
        const a = t.accept(l, { taskId: l.id, step: l.step, version: l.version, loss: 1, tokens, grads: new Float32Array(t.paramCount).fill(l.workerId === 'bad' ? 1 : 0), gradNorm: 0, nonFinite: 0, timings: { totalMs: 1 } }, tokens, l.workerId);
        expect(a.ok).toBe(true);
      }
      const pendingBefore = work.pendingPositions;
      const reopened = t.discardWorker('bad').length;
      // Robust aggregators drop exactly the banned worker's vectors; the streaming mean restarts the step.
      expect(reopened, aggregate).toBe(aggregate === 'mean' ? 2 : 1);
      expect(work.pendingPositions - pendingBefore).toBe(aggregate === 'mean' ? 6 : 3);
      expect(t.aggregator.count).toBe(aggregate === 'mean' ? 0 : 1);
      expect(work.check(leases[1].id, 'bad')).toMatchObject({ code: 'LATE' });
      expect(t.discardWorker('nobody')).toEqual([]);
    }
  });
});

describe('input hygiene on the socket', () => {
  it('unknown events and floods are refused with codes, counted per worker; the coordinator stays up', async () => {
    const c = await coordinator({ rateLimit: 20, maxSteps: 1 });
    const s = raw(c.url);
    const got = rejects(s);
    const welcome = new Promise<WelcomeMsg>((r) => s.once('welcome', r));
    s.emit('hello', hello({ name: 'flooder' }));
    const w = await welcome;
    s.emit('x-not-an-event', { junk: true });
    for (let i = 0; i < 300; i++) s.emit('heartbeat', { t: i });
    await until(() => got.some((m) => m.code === 'RATE_LIMIT'), 5000, 'RATE_LIMIT');
    expect(got.find((m) => m.event === 'x-not-an-event')?.code).toBe('BAD_SCHEMA');
    const row = c.ctx.status().workers.find((x) => x.id === w.workerId)!;
    expect(row.rejectedByCode.BAD_SCHEMA).toBe(1);
    expect(row.rejectedByCode.RATE_LIMIT).toBeGreaterThanOrEqual(1);
    expect(c.ctx.status().security!.counters.rateLimited).toBeGreaterThan(200);
    expect((await fetch(c.url + '/healthz')).ok).toBe(true);
  });

  it('a fast honest worker answering its own leases is not rate-limited; other packets past the limit are', async () => {
    // --rate-limit 2/s (burst 10): 40 one-row steps answered at once by one worker are 40 results
    // in well under a second. Before, results past the burst were dropped and the step waited for
    // its lease to expire (leaseMs 60 s here: the test would time out).
    const c = await coordinator({ rateLimit: 2, maxSteps: 40, globalBatch: 1, maxMicroBatch: 1, verifyRate: 0, leaseMs: 60_000, heartbeatMs: 5_000 });
    const s = raw(c.url);
    const got = rejects(s);
    let acks = 0;
    s.on('ack', () => acks++);
    let n = 0;
    s.on('task', (t: TaskMsg) => {
      const P = c.trainer.paramCount;
      const grads = new Float32Array(P);
      for (let i = 0; i < P; i++) grads[i] = Math.sin(i + 7 * ++n) * 1e-3;
      let ss = 0;
      for (let i = 0; i < P; i++) ss += grads[i] * grads[i];
      s.emit('result', { taskId: t.taskId, step: t.step, version: t.version, loss: 3, tokens: t.tokens, grads, gradNorm: Math.sqrt(ss), nonFinite: 0, timings: { totalMs: 1 } });
    });
    s.emit('hello', hello({ name: 'fast' }));
    // Counted from the outside: the acknowledgements the worker received (the last one may follow
    // the trainer's finish by a turn).
    await until(() => acks === 40, 30_000, '40 acknowledged results');
    expect(c.trainer.finished).toBe(true);
    expect(got.filter((m) => m.code === 'RATE_LIMIT')).toEqual([]);
    // A result for a lease it does not hold is charged as any packet: a flood of them is limited.
    for (let i = 0; i < 60; i++) s.emit('result', { taskId: 'not-mine', step: 0 });
    await until(() => got.some((m) => m.code === 'RATE_LIMIT'), 5_000, 'RATE_LIMIT');
  });

  it("a result whose reported norm is not its gradient's norm is refused OUT_OF_RANGE; with the true norm it is acknowledged", async () => {
    // The norm compared is the one validateResult measures in its finite scan (measuredNorm).
    const c = await coordinator({ verifyRate: 0, maxSteps: 3, globalBatch: 2, maxMicroBatch: 2 });
    const s = raw(c.url);
    const got = rejects(s);
    const tasks: TaskMsg[] = [];
    s.on('task', (t: TaskMsg) => tasks.push(t));
    const welcome = new Promise<WelcomeMsg>((r) => s.once('welcome', r));
    s.emit('hello', hello());
    const w = await welcome;
    await until(() => tasks.length === 1, 10_000, 'task 1');
    const grads = new Float32Array(w.paramCount).map((_, i) => Math.cos(i) * 1e-3);
    let norm = 0;
    for (const g of grads) norm += g * g;
    const result = (t: TaskMsg, gradNorm: number) => ({ taskId: t.taskId, step: t.step, version: t.version, loss: 2, tokens: t.tokens, grads, gradNorm, nonFinite: 0, timings: { totalMs: 1 } });
    s.emit('result', result(tasks[0], 1.5 * Math.sqrt(norm)));
    await until(() => got.length > 0, 5000, 'reject');
    expect(got[0].code).toBe('OUT_OF_RANGE');
    expect(got[0].message).toMatch(/gradient's norm is/);
    expect(c.ctx.status().security!.counters.normLies).toBe(1);
    // Refused by security: its samples were released at once and leased again.
    await until(() => tasks.length === 2, 10_000, 'task 2');
    const acked = new Promise<{ taskId: string }>((r) => s.once('ack', r));
    s.emit('result', result(tasks[1], Math.sqrt(norm)));
    expect((await acked).taskId).toBe(tasks[1].taskId);
    expect(got.length).toBe(1);
  });

  it('a replayed gradient is a DUPLICATE under a fresh task id; an oversized message closes the connection', async () => {
    const c = await coordinator({ verifyRate: 0, maxSteps: 3, globalBatch: 2, maxMicroBatch: 2 });
    const s = raw(c.url);
    const got = rejects(s);
    const tasks: TaskMsg[] = [];
    s.on('task', (t: TaskMsg) => tasks.push(t));
    const welcome = new Promise<WelcomeMsg>((r) => s.once('welcome', r));
    s.emit('hello', hello());
    const w = await welcome;
    expect(w.maxMessageBytes).toBe(c.trainer.paramCount * 4 + (1 << 20)); // gradient bytes + 1 MiB margin
    await until(() => tasks.length === 1, 10_000, 'task 1');
    const grads = new Float32Array(w.paramCount).map((_, i) => Math.sin(i) * 1e-3);
    let norm = 0;
    for (const g of grads) norm += g * g;
    const result = (t: TaskMsg) => ({ taskId: t.taskId, step: t.step, version: t.version, loss: 2, tokens: t.tokens, grads, gradNorm: Math.sqrt(norm), nonFinite: 0, timings: { totalMs: 1 } });
    const acked = new Promise((r) => s.once('ack', r));
    s.emit('result', result(tasks[0]));
    await acked;
    await until(() => tasks.length === 2, 10_000, 'task 2');
    s.emit('result', result(tasks[1]));
    await until(() => got.length > 0, 5000, 'reject');
    expect(got[0].code).toBe('DUPLICATE');
    expect(got[0].message).toMatch(/replay/);
    expect(c.ctx.status().security!.counters.replays).toBe(1);
    const closed = new Promise<boolean>((r) => {
      s.once('disconnect', () => r(true));
      setTimeout(() => r(false), 5000);
    });
    s.emit('result', { taskId: 'huge', grads: new Float32Array(w.paramCount + (1 << 19)) });
    expect(await closed).toBe(true);
    expect((await fetch(c.url + '/healthz')).ok).toBe(true);
  });
});

describe('access', () => {
  it('origin checks: another site is refused, the same origin and listed ones pass, Node (no Origin) passes', async () => {
    const c = await coordinator({ allowedOrigins: 'https://lab.example' });
    const tryOrigin = (origin?: string) =>
      new Promise<boolean>((res) => {
        const s = raw(c.url, origin ? { origin } : undefined);
        s.once('connect', () => res(true));
        s.once('connect_error', () => res(false));
      });
    expect(await tryOrigin('https://evil.example')).toBe(false);
    expect(await tryOrigin(c.url)).toBe(true);
    expect(await tryOrigin('https://lab.example')).toBe(true);
    expect(await tryOrigin()).toBe(true);
  });

  it('--join-token: a worker without it is refused UNAUTHORIZED; with it (Node worker flag) it trains', async () => {
    const c = await coordinator({ joinToken: 'closed-cluster-secret', maxSteps: 1 });
    const s = raw(c.url);
    const got = rejects(s);
    s.emit('hello', hello({ joinToken: 'wrong' }));
    await until(() => got.length > 0, 5000, 'reject');
    expect(got[0]).toMatchObject({ event: 'hello', code: 'UNAUTHORIZED' });
    await client(c.url, 'member', 'none', 'closed-cluster-secret');
    await until(() => c.trainer.step >= 1, 60_000, 'a step with the token');
  });

  it('pages carry a CSP; worker strings are data; no endpoint follows a client-chosen path', async () => {
    const c = await coordinator();
    for (const p of ['/', '/worker']) {
      const r = await fetch(c.url + p);
      expect(r.headers.get('content-security-policy'), p).toMatch(/default-src 'self'.*script-src 'self'/);
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    }
    for (const p of ['/..%2f..%2f..%2fetc%2fpasswd', '/api/export/..%2F..%2Fetc%2Fpasswd', '/worker/..%2f..%2fpackage.json']) {
      const r = await fetch(c.url + p);
      expect(r.status, p).toBeGreaterThanOrEqual(400);
      expect(await r.text()).not.toMatch(/root:|"name": "webgpu-volunteer-train"/);
    }
    const g = await fetch(c.url + '/api/generate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a', maxTokens: 1, checkpoint: '../../etc/passwd' }) });
    expect(g.status).toBe(400);
    // Worker-supplied text is kept verbatim as data (the dashboard renders it with textContent).
    const s = raw(c.url);
    const welcome = new Promise<WelcomeMsg>((r) => s.once('welcome', r));
    s.emit('hello', hello({ name: '<img src=x onerror=alert(1)>' }));
    const w = await welcome;
    const row = (await (await fetch(c.url + '/api/status')).json()).workers.find((x: { id: string }) => x.id === w.workerId);
    expect(row.name).toBe('<img src=x onerror=alert(1)>');
  });
});
