// Two coordinator processes' worth of wiring (two startCoordinator instances with --redis, each
// its own HTTP server, socket.io, Redis clients and election; in this test's process to keep it
// cheap) sharing one run through a real redis-server, with 3 CPU workers spread over them (2 + 1).
// Against the same 3 workers on ONE coordinator without Redis, same data and seed: every step's
// loss agrees within 1e-6 and the final parameters within float rounding (the gateways fold
// their workers into one token-weighted partial, the leader folds the partials: the flat mean up
// to the order of float additions). Every process reports the same step and history, and the
// cluster block lists both processes, one leader. Admin commands work from the gateway; a ban on
// one process holds on the other.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { listCheckpoints } from '../../coordinator/checkpoint/store.ts';
import { readCheckpoint } from '../../coordinator/checkpoint/format.ts';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { startTestWorker, until, untilAsync, type TestWorker } from '../coordinator/test-worker.ts';
import { TestRedis } from './redis-server.ts';

const STEPS = 8;
const BATCH = 12;
const dirs: string[] = [];
const handles: CoordinatorHandle[] = [];
const workers: TestWorker[] = [];
let redis: TestRedis | null = null;
afterAll(async () => {
  workers.forEach((w) => w.close());
  for (const h of handles) await h.close().catch(() => {});
  await redis?.dispose();
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'cluster-eq-'));
  dirs.push(d);
  return d;
};
const base = (runDir: string) => ({
  port: 0, host: '127.0.0.1', preset: 'tiny', globalBatch: BATCH, maxSteps: STEPS, seed: 7, evalEvery: 0, checkpointEvery: 0,
  verifyRate: 0, runDir, adminToken: 'equivalence-token', logLevel: 'silent' as const,
});
const logger = pino({ level: 'silent' });
const json = async (url: string) => (await fetch(url)).json();

async function finalParams(runDir: string): Promise<Float32Array> {
  const c = listCheckpoints(runDir)[0];
  expect(c.step).toBe(STEPS);
  return readCheckpoint(c.file).params;
}

describe('several coordinators on one Redis', () => {
  it('3 workers over 2 gateways train exactly like the same 3 workers on one coordinator', async () => {
    // One coordinator, no Redis.
    const soloDir = tmp();
    const solo = await startCoordinator(base(soloDir), { logger });
    handles.push(solo);
    for (let i = 0; i < 3; i++) workers.push(startTestWorker(solo.url, { name: `solo-${i}` }));
    await until(() => solo.trainer.finished, 60_000, 'the single coordinator to finish');
    const soloLoss = solo.trainer.history.map((p) => p.loss);
    const soloLeased = solo.trainer.accounting().leased;
    workers.splice(0).forEach((w) => w.close());
    await solo.close();

    // Two processes on one Redis, sharing a run directory.
    redis = await TestRedis.start();
    const runDir = tmp();
    // Both processes share this test's event loop with three CPU workers: a long lease, so that a
    // loaded machine's stalls never pass for a dead leader here (failover is failover.test.ts's).
    const ttl = { redis: redis.url, runName: 'eq', leaderTtlMs: 15_000 };
    const a = await startCoordinator({ ...base(runDir), ...ttl }, { logger });
    handles.push(a);
    const b = await startCoordinator({ ...base(runDir), ...ttl }, { logger });
    handles.push(b);
    await untilAsync(async () => (await json(a.url + '/api/status')).cluster.processes.length === 2 && (await json(b.url + '/api/status')).cluster.leader !== null, 20_000, 'both processes in the cluster view');
    const spread = [a, a, b];
    const cw = spread.map((h, i) => startTestWorker(h.url, { name: `cluster-${i}` }));
    workers.push(...cw);
    await untilAsync(async () => (await json(a.url + '/api/status')).finished === true && (await json(b.url + '/api/status')).finished === true, 90_000, 'the cluster to finish');

    const [sa, sb] = [await json(a.url + '/api/status'), await json(b.url + '/api/status')];
    expect(sa.step).toBe(STEPS);
    expect(sb.step).toBe(STEPS);
    expect(sa.cluster.leader).toBe(sb.cluster.leader);
    expect(sa.cluster.epoch).toBe(1); // one leader all along
    expect(sa.cluster.processes.map((p: { role: string }) => p.role).sort()).toEqual(['gateway', 'leader']);
    // Every worker of both processes is listed by each process.
    expect(sa.workers.length).toBe(3);
    expect(sb.workers.length).toBe(3);
    // Both gateways contributed (acks reached workers on both), every sample once.
    expect(cw.every((w) => w.acks.length > 0)).toBe(true);
    const acked = cw.flatMap((w) => w.acks.flatMap((x) => w.sent.get(x.taskId) ?? []));
    expect(acked.length).toBe(STEPS * BATCH);
    expect(sa.samplesTrained).toBe(STEPS * BATCH);
    // The reduction tree: the leader leased (and folded) one slice per gateway per step, not one
    // task per worker.
    console.log(`results folded by the leader: ${sa.accounting.leased} over ${STEPS} steps (one coordinator, same workers: ${soloLeased})`);
    expect(sa.accounting.leased).toBeLessThanOrEqual(2 * STEPS);

    for (const s of [sa, sb]) expect(s.cluster.processes).toHaveLength(2);
    const ha = await json(a.url + '/api/history');
    const hb = await json(b.url + '/api/history');
    expect(ha.loss).toHaveLength(STEPS);
    expect(hb.loss).toEqual(ha.loss);
    expect(ha.step).toEqual([...Array(STEPS).keys()]);
    const diffs = soloLoss.map((l, i) => Math.abs(l - ha.loss[i]));
    console.log(`per-step |loss difference| vs one coordinator: max ${Math.max(...diffs).toExponential(2)}`);
    for (const d of diffs) expect(d).toBeLessThanOrEqual(1e-6);

    // Operator commands work from any process: pause and resume from the gateway reach the
    // leader (every process then reports it), a kick from one process reaches the other's worker.
    const gateway = sa.cluster.leader === sa.cluster.self ? b : a;
    const other = gateway === a ? b : a;
    const admin = (h: CoordinatorHandle, path: string) => fetch(h.url + path, { method: 'POST', headers: { authorization: 'Bearer equivalence-token' } });
    expect((await admin(gateway, '/api/admin/pause')).status).toBe(200);
    await untilAsync(async () => (await json(a.url + '/api/status')).paused === true && (await json(b.url + '/api/status')).paused === true, 10_000, 'paused everywhere');
    expect((await admin(gateway, '/api/admin/resume')).status).toBe(200);
    await untilAsync(async () => (await json(a.url + '/api/status')).paused === false && (await json(b.url + '/api/status')).paused === false, 10_000, 'resumed everywhere');
    const victim = cw[spread.indexOf(other)];
    expect((await admin(gateway, `/api/admin/kick/${victim.id()}`)).status).toBe(200);
    await until(() => !victim.socket.connected, 10_000, 'the other process to kick its worker');
    expect((await admin(gateway, '/api/admin/kick/nobody-here')).status).toBe(404);
    // A ban carried out by one process holds on the other: the identity is refused there.
    const banned = cw.find((w, i) => spread[i] === gateway && w.socket.connected)!;
    const bannedId = banned.id()!;
    gateway.hub.gateway.ban(gateway.hub.workers.byId.get(bannedId)!, 'test: banned on one process');
    await until(() => other.hub.security.isBanned(bannedId), 10_000, 'the ban to reach the other process');
    const comeback = startTestWorker(other.url, { resumeId: bannedId, name: 'banned-comeback' });
    workers.push(comeback);
    await until(() => comeback.rejects.some((r) => r.code === 'BANNED'), 10_000, 'the banned identity refused elsewhere');

    // Checkpoints are the leader's: a gateway refuses with ERR_NOT_LEADER, naming where to go.
    const refused = await admin(gateway, '/api/admin/checkpoint');
    expect(refused.status).toBe(409);
    expect((await refused.json()).error.code).toBe('ERR_NOT_LEADER');
    expect((await admin(other, '/api/admin/checkpoint')).status).toBe(200);

    const [p1, p2] = [await finalParams(soloDir), await finalParams(runDir)];
    let maxDiff = 0;
    for (let i = 0; i < p1.length; i++) maxDiff = Math.max(maxDiff, Math.abs(p1[i] - p2[i]));
    console.log(`final parameters: max |difference| ${maxDiff.toExponential(2)}`);
    expect(maxDiff).toBeLessThanOrEqual(1e-6);
  }, 150_000);
});
