// The lease and its fencing against a real redis-server: one leader at a time; a leader that
// stops renewing (a stalled process) stops counting itself leader before its lease can run out,
// another takes the lease with a larger epoch, and the stalled one can neither renew nor commit
// (FENCED_SET) afterwards; a leader that is not leading writes no checkpoint (ERR_NOT_LEADER) and
// its file does not appear; a new leader skips a checkpoint a deposed leader wrote late; a Redis restarted empty never hands out an epoch at or below the one
// recorded beside the checkpoints, and makes the new leader wait one lease before acting.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { LeaderElection } from '../../coordinator/cluster/election.ts';
import { LeaderStack, pickCheckpoint } from '../../coordinator/cluster/leader.ts';
import { Server } from 'socket.io';
import { ensureRunDir, listCheckpoints, saveCheckpoint } from '../../coordinator/checkpoint/store.ts';
import { validateConfig } from '../../coordinator/config.ts';
import { Trainer } from '../../coordinator/train/trainer.ts';
import { loadDataset } from '../../shared/data/index.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { openRedis, parseLease, runKeys, RunStore, type LeaseValue } from '../../coordinator/cluster/redis.ts';
import { until, untilAsync } from '../coordinator/test-worker.ts';
import { TestRedis } from './redis-server.ts';

const log = pino({ level: 'silent' });
let redis: TestRedis;
const clients: Array<{ disconnect(): void }> = [];
const elections: LeaderElection[] = [];
const dir = mkdtempSync(join(tmpdir(), 'cluster-fencing-'));
afterAll(async () => {
  for (const e of elections) await e.stop().catch(() => {});
  clients.forEach((c) => c.disconnect());
  await redis?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function store(name = 'fence'): Promise<RunStore> {
  const r = await openRedis(redis.url, 'test');
  clients.push(r);
  return new RunStore(r, runKeys(name));
}

function election(s: RunStore, id: string, ttl: number, floor = () => 0) {
  const events: Array<{ kind: 'elected'; lease: LeaseValue; at: number } | { kind: 'lost'; why: string; at: number }> = [];
  const e = new LeaderElection(s, { id, url: `http://${id}:1` }, ttl, floor, {
    elected: (lease) => events.push({ kind: 'elected', lease, at: Date.now() }),
    lost: (why) => events.push({ kind: 'lost', why, at: Date.now() }),
  }, log);
  elections.push(e);
  return { e, events };
}

describe('leader lease and fencing on Redis', () => {
  it('one leader; a stalled one loses the lease, cannot renew or commit; the next has a larger epoch', async () => {
    redis = await TestRedis.start();
    const [sa, sb] = [await store(), await store()];
    const ttl = 600;
    const a = await sa.acquire('a|http://a:1', ttl, 0);
    expect(a).not.toBeNull();
    expect(await sb.acquire('b|http://b:1', ttl, 0)).toBeNull(); // held by A
    const tokenA = a!.token;
    expect(await sa.renew(tokenA, ttl)).toBe(true);
    expect(await sa.fencedSet(tokenA, sa.keys.checkpoint, 'from-a')).toBe(true);
    // A stalls (no more renewals): its lease runs out in Redis and B takes it.
    let b: { token: string } | null = null;
    await untilAsync(async () => (b = await sb.acquire('b|http://b:1', ttl, 0)) !== null, 5_000, 'B to take the lease');
    expect(parseLease(b!.token)!.epoch).toBeGreaterThan(parseLease(tokenA)!.epoch);
    // A wakes up: nothing it does under its old token takes effect.
    expect(await sa.renew(tokenA, ttl)).toBe(false);
    expect(await sa.fencedSet(tokenA, sa.keys.checkpoint, 'late-from-a')).toBe(false);
    expect(await sa.redis.get(sa.keys.checkpoint)).toBe('from-a');
    expect(await sb.fencedSet(b!.token, sb.keys.checkpoint, 'from-b')).toBe(true);
    await sa.release(tokenA); // releasing someone else's lease does nothing
    expect((await sb.lease())?.id).toBe('b');
    await sb.release(b!.token);
    expect(await sb.lease()).toBeNull();
  }, 20_000);

  it('LeaderElection: exactly one of two leads; the leader stops leading on its own when Redis is gone', async () => {
    const [sa, sb] = [await store('elect'), await store('elect')];
    // The epoch recorded beside the checkpoints (cluster-epoch.json in a real run): the highest seen.
    let floor = 0;
    const ttl = 3000;
    const x = election(sa, 'x', ttl, () => floor);
    const y = election(sb, 'y', ttl, () => floor);
    x.e.start();
    y.e.start();
    await until(() => x.e.leading || y.e.leading, 5_000, 'a leader');
    expect(x.e.leading && y.e.leading).toBe(false);
    const [leader, other] = x.e.leading ? [x, y] : [y, x];
    floor = (leader.events[0] as { lease: LeaseValue }).lease.epoch;
    // Renewals keep it: over more than a lease length nobody else is elected.
    await new Promise((r) => setTimeout(r, ttl + 500));
    expect(other.events.filter((e) => e.kind === 'elected')).toHaveLength(0);
    expect(leader.e.leading).toBe(true);
    // Redis gone: the leader steps down by itself (it cannot renew), nobody leads.
    await redis.stop();
    await until(() => leader.events.some((e) => e.kind === 'lost'), 2 * ttl, 'the leader to step down');
    expect(leader.e.leading).toBe(false);
    expect(other.e.leading).toBe(false);
    // Back, empty: a new leader (either) with an epoch above the recorded floor. It holds the
    // lease at once but acts (the elected hook) only a full lease later: the one before could not
    // know Redis forgot it and may count on its lease that long (a deliberate wait, a lower bound).
    await redis.restart();
    await until(() => x.e.leading || y.e.leading, 10_000, 'a leader after the restart');
    const heldAt = Date.now();
    const now = x.e.leading ? x : y;
    await until(() => now.events.some((e) => e.kind === 'elected' && e.at >= heldAt - ttl), 3 * ttl, 'the elected hook');
    const elected = now.events.filter((e) => e.kind === 'elected').at(-1) as { lease: LeaseValue; at: number };
    expect(elected.lease.epoch).toBe(floor + 1);
    expect(elected.at - heldAt).toBeGreaterThanOrEqual(ttl - 2 * Math.floor(ttl / 5) - 50);
    await Promise.all([x.e.stop(), y.e.stop()]);
  }, 40_000);

  it('a Redis restarted empty never hands out an epoch at or below the floor, and says so', async () => {
    const s = await store('floor');
    const got = await s.acquire('f|http://f:1', 1000, 41);
    expect(parseLease(got!.token)!.epoch).toBe(42);
    expect(got!.forgot).toBe(true);
    await s.release(got!.token);
    const again = await s.acquire('f|http://f:1', 1000, 41);
    expect(parseLease(again!.token)!.epoch).toBe(43);
    expect(again!.forgot).toBe(false);
  }, 10_000);

  it('a new leader resumes from the newest checkpoint, skipping one a deposed leader wrote after losing its lease', () => {
    const config = validateConfig({ preset: 'tiny', globalBatch: 4 });
    const t = new Trainer(config, presetConfig('tiny'), loadDataset({ T: 16, seed: 1 }));
    const runDir = join(dir, 'picks');
    ensureRunDir(runDir);
    const write = (step: number, epoch: number) => {
      t.step = step;
      saveCheckpoint(runDir, t.snapshot({ preset: 'tiny', config: { cluster: { epoch, processId: `p${epoch}` } } }), 10);
    };
    write(3, 2); // committed by the leader of epoch 2
    write(5, 1); // the deposed leader of epoch 1, late, never committed
    expect(pickCheckpoint(runDir, { step: 3, epoch: 2 })!.data.meta.step).toBe(3);
    write(6, 2); // the epoch-2 leader's next one, written but not yet committed when it died
    expect(pickCheckpoint(runDir, { step: 3, epoch: 2 })!.data.meta.step).toBe(6);
    // Without a committed record (Redis restarted empty) the newest file is taken.
    expect(pickCheckpoint(runDir, null)!.data.meta.step).toBe(6);
  });

  it('a leader whose lease no longer surely holds writes no checkpoint (ERR_NOT_LEADER)', async () => {
    const config = validateConfig({ preset: 'tiny', globalBatch: 4, evalEvery: 0, redis: redis.url });
    const runDir = join(dir, 'stack');
    ensureRunDir(runDir);
    const io = new Server(); // the /cluster namespace only: the stack's hub listens there
    let leading = true;
    const stack = new LeaderStack({
      nsp: io.of('/cluster'), config, model: presetConfig('tiny'), dataset: loadDataset({ T: 16, seed: 1 }), seqLen: 16, runDir, log,
      store: await store('stack'), token: 'not-the-lease', epoch: 5, me: { id: 'me', url: 'http://me:1' }, leading: () => leading, publish: () => {},
    }, null);
    try {
      expect(stack.checkpointNow('test').step).toBe(0);
      expect(listCheckpoints(runDir)).toHaveLength(1);
      leading = false;
      expect(() => stack.checkpointNow('test')).toThrow(/no longer the leader/);
      expect(listCheckpoints(runDir)).toHaveLength(1);
    } finally {
      await stack.close(); // (the Server was never attached to an HTTP server: nothing else to close)
    }
  });
});
