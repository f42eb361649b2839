// The product worker loop (worker-web/client) against the real coordinator on loopback, CPU
// reference backend: join, train, stats; bye returns the lease at once; pause/resume keeps the id;
// a coordinator restart is survived by reconnecting with backoff; faults are injected and refused.
import { afterAll, describe, expect, it } from 'vitest';
import { WorkerClient, type WorkerClientOptions } from '../../worker-web/client/worker-client.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import { parseFault } from '../../worker-web/client/faults.ts';
import { tinyCoordinator, until } from './helpers.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

const FAST_BACKOFF = { baseMs: 100, maxMs: 400, factor: 2, jitter: 0.5 };

function worker(url: string, o: Partial<WorkerClientOptions> = {}): WorkerClient {
  const logs: string[] = [];
  const c = new WorkerClient({
    url,
    host: createCpuHost({ description: 'test cpu', probedBytes: 256 * 2 ** 20 }),
    backoff: FAST_BACKOFF,
    log: (level, msg) => logs.push(`${level} ${msg}`),
    ...o,
  });
  cleanups.push(() => c.stop('test over'));
  return c;
}

describe('WorkerClient against the real coordinator', () => {
  it('two CPU workers join, train, are acknowledged; stop sends bye and the coordinator frees them at once', async () => {
    const c = await tinyCoordinator({ maxSteps: 4 });
    cleanups.push(() => c.dispose());
    const a = worker(c.url, { name: 'alpha', userCapBytes: 128 * 2 ** 20 });
    const b = worker(c.url, { name: 'beta' });
    await Promise.all([a.start(), b.start()]);
    await until(() => c.trainer.step >= 4, 60_000, '4 steps');
    await until(() => a.stats.accepted + b.stats.accepted === a.stats.tasksDone + b.stats.tasksDone, 5_000, 'acks');
    for (const w of [a, b]) {
      expect(w.stats.workerId).toMatch(/\S/);
      expect(w.stats.tasksDone).toBeGreaterThan(0);
      expect(w.stats.rejected).toBe(0);
      expect(w.stats.plan?.role).toBe('replica');
      expect(w.stats.lastLoss).toBeGreaterThan(0);
      expect(w.stats.gpuMs).toBeGreaterThan(0);
      expect(w.stats.tokensPerSec).toBeGreaterThan(0);
    }
    // The coordinator saw what hello carried.
    const st = await (await fetch(`${c.url}/api/status`)).json();
    const alpha = st.workers.find((w: { id: string }) => w.id === a.stats.workerId);
    expect(alpha).toMatchObject({ backend: 'cpu', name: 'alpha' });
    expect(alpha.budgetBytes).toBeLessThanOrEqual(128 * 2 ** 20);
    // bye: dropped immediately, long before the 10 s silence rule.
    const t0 = Date.now();
    await a.stop('done');
    await until(() => c.hub.workers.byId.get(a.stats.workerId!)?.socket === null, 2_000, 'coordinator to drop alpha');
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(a.stats.state).toBe('stopped');
  });

  it('pause leaves (lease returned), resume rejoins under the same id; a coordinator restart is survived', async () => {
    const c1 = await tinyCoordinator({ maxSteps: 0, checkpointEvery: 0 });
    cleanups.push(() => c1.dispose());
    const w = worker(c1.url, { name: 'flappy' });
    await w.start();
    await until(() => w.stats.accepted >= 2, 30_000, 'two accepted tasks');
    const id = w.stats.workerId!;
    w.pause('test pause');
    expect(w.stats.state).toBe('paused');
    await until(() => c1.hub.workers.byId.get(id)?.socket === null, 2_000, 'pause to leave');
    const before = w.stats.accepted;
    w.resume();
    await until(() => w.stats.accepted >= before + 2, 30_000, 'work after resume');
    expect(w.stats.workerId).toBe(id);

    // Coordinator goes away and comes back on the same port from its checkpoint.
    const port = c1.port;
    const runDir = c1.runDir;
    await c1.close({ checkpoint: true });
    await until(() => w.stats.state === 'connecting', 5_000, 'worker to notice');
    const c2 = await tinyCoordinator({ maxSteps: 0, port, resume: true }, runDir);
    cleanups.push(() => c2.dispose());
    const done = w.stats.tasksDone;
    await until(() => w.stats.tasksDone >= done + 2 && w.stats.connected, 30_000, 'work after the restart');
    expect(w.stats.reconnects).toBeGreaterThan(0);
    expect(c2.resumedFrom).not.toBeNull();
  });

  it('faulty workers: nan and stale results are refused with their codes, garbage is refused and the honest results still count', async () => {
    const c = await tinyCoordinator({ maxSteps: 0, leaseMs: 2500 }); // runs until every fault has shown
    cleanups.push(() => c.dispose());
    const honest = worker(c.url, { name: 'honest' });
    const nan = worker(c.url, { name: 'nan', fault: parseFault('nan'), seed: 2 });
    const junk = worker(c.url, { name: 'junk', fault: parseFault('garbage'), seed: 3 });
    const stale = worker(c.url, { name: 'stale', fault: parseFault('stale'), seed: 4 });
    await Promise.all([honest.start(), nan.start(), junk.start(), stale.start()]);
    await until(() => c.trainer.step >= 3, 60_000, '3 steps');
    await until(() => nan.stats.rejected > 0 && junk.stats.garbageSent > 0 && stale.stats.replays > 0, 10_000, 'faults to be exercised');
    expect(nan.stats.accepted, 'nan worker accepted').toBe(0);
    expect(nan.stats.rejectedByCode.NON_FINITE, JSON.stringify(nan.stats.rejectedByCode)).toBeGreaterThan(0);
    expect(junk.stats.accepted).toBeGreaterThan(0);
    // After its first step its version is old (STALE_VERSION), and it replays its previous result
    // (DUPLICATE, or LATE once that step is over).
    await until(() => stale.stats.rejected >= 2, 10_000, 'stale rejections');
    expect(stale.stats.rejectedByCode.STALE_VERSION).toBeGreaterThan(0);
    expect((stale.stats.rejectedByCode.DUPLICATE ?? 0) + (stale.stats.rejectedByCode.LATE ?? 0)).toBeGreaterThan(0);
    // Malformed results are refused by schema (the catalog starts with schema-level garbage).
    expect(junk.stats.rejectedByCode.BAD_SCHEMA, JSON.stringify(junk.stats.rejectedByCode)).toBeGreaterThan(0);
    // On a loaded machine an honest result can miss its short lease (LATE); nothing else is refused.
    const honestRefused = honest.stats.rejected - (honest.stats.rejectedByCode.LATE ?? 0);
    expect(honestRefused, JSON.stringify(honest.stats.rejectedByCode)).toBe(0);
    // The coordinator is alive and answering.
    expect((await fetch(`${c.url}/healthz`)).ok).toBe(true);
  });

  it('a straggler (slow:MS) past its first lease: the lease is re-leased, its late result refused', async () => {
    const c = await tinyCoordinator({ maxSteps: 0, leaseMs: 1000 });
    cleanups.push(() => c.dispose());
    const honest = worker(c.url, { name: 'honest' });
    const slow = worker(c.url, { name: 'slow', fault: parseFault('slow:3000'), seed: 5 });
    await Promise.all([honest.start(), slow.start()]);
    await until(() => slow.stats.tasksDone >= 1, 20_000, 'the slow worker to answer');
    await until(() => slow.stats.rejected + slow.stats.accepted >= 1, 5_000, 'the answer to its first result');
    // Its first lease (1 s, nothing measured yet) expired 2 s before it answered.
    expect(slow.stats.rejectedByCode.LATE, JSON.stringify(slow.stats.rejectedByCode)).toBeGreaterThanOrEqual(1);
    // The honest worker's first answer may itself be in flight (or, on a loaded machine, have missed
    // its first 1 s lease): training goes on, so it is accepted soon after.
    await until(() => honest.stats.accepted > 0, 30_000, 'an accepted honest result');
  });

  it('kicked by the operator: the worker stops for good instead of reconnecting', async () => {
    const c = await tinyCoordinator({ maxSteps: 0 });
    cleanups.push(() => c.dispose());
    const w = worker(c.url, { name: 'kickme' });
    await w.start();
    await until(() => w.stats.accepted >= 1, 30_000, 'an accepted task');
    const id = w.stats.workerId!;
    const res = await fetch(`${c.url}/api/admin/kick/${id}`, { method: 'POST', headers: { authorization: 'Bearer worker-test-token' } });
    expect(res.status).toBe(200);
    await w.stoppedPromise();
    expect(w.stats.state).toBe('stopped');
    expect(w.stats.detail).toMatch(/kicked/);
    await new Promise((r) => setTimeout(r, 800)); // longer than the fast backoff: it would be back by now
    expect(c.hub.workers.byId.get(id)?.socket).toBeNull();
    expect(c.hub.workers.connected()).toHaveLength(0);
  });
});
