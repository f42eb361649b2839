// --mode diloco end to end: a real coordinator (tiny preset, loopback) and in-process Node CPU
// workers (the product WorkerClient), self-describing data. Counting is from the outside: the rows
// of the rounds each worker was acknowledged for (worker trace: task rows + acks).
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { outerHyperAt, roundLength, roundStart, validateConfig, type CoordinatorConfigInput } from '../../coordinator/config.ts';
import { syntheticDataset, syntheticId } from '../../shared/data/synthetic.ts';
import { Trainer } from '../../coordinator/train/trainer.ts';
import { RoundTrainer } from '../../coordinator/train/round-trainer.ts';
import { lrAt, runSchedule } from '../../shared/optim/index.ts';
import { decode, encode } from '../../shared/diloco/codec.ts';
import { msgpackParser } from '../../shared/protocol/parser.ts';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.ts';
import { validateRoundTask, type RoundTaskMsg } from '../../shared/protocol/round.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import type { TraceEvent } from '../../worker-web/client/trace.ts';

const SIZE = 48;
const T = 16;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function coordinator(extra: Partial<CoordinatorConfigInput>, dir = mkdtempSync(join(tmpdir(), 'diloco-'))): Promise<CoordinatorHandle & { dir: string }> {
  const c = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: true,
    adminToken: 'diloco-test-token', mode: 'diloco', innerSteps: 4, maxMicroBatch: 2, lr: 3e-3, warmupSteps: 0, roundGraceMs: 300,
    heartbeatMs: 200, deadAfterMs: 1500, seqLen: T, ...extra,
  }, { dataset: (t) => syntheticDataset(SIZE, t) });
  cleanups.push(() => c.close());
  return Object.assign(c, { dir });
}

function worker(url: string, trace: TraceEvent[], name: string): WorkerClient {
  const c = new WorkerClient({
    url, name, host: createCpuHost({ description: 'test cpu', probedBytes: 256 * 2 ** 20 }),
    backoff: { baseMs: 50, maxMs: 200, factor: 2, jitter: 0 } as never, log: () => undefined, trace: (e) => trace.push(e),
  });
  cleanups.push(() => c.stop('test over'));
  return c;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sample ids of every acknowledged round, per epoch-free count (the data is one epoch here). */
function acknowledgedIds(traces: TraceEvent[][]): number[] {
  const ids: number[] = [];
  for (const tr of traces) {
    const rows = new Map<string, number[]>();
    for (const e of tr) {
      if (e.ev === 'task') rows.set(e.taskId, e.heads.map((h) => syntheticId(h)));
      if (e.ev === 'ack') ids.push(...(rows.get(e.taskId) ?? []));
    }
  }
  return ids;
}

describe('--mode diloco', () => {
  it('trains in rounds: loss falls, every acknowledged row is trained once, status reports mode, round and wire bytes', async () => {
    const c = await coordinator({ maxSteps: 5, compress: 'int8' });
    const traces: TraceEvent[][] = [[], []];
    await worker(c.url, traces[0], 'a').start();
    await worker(c.url, traces[1], 'b').start();
    await until(() => c.trainer.finished, 90_000, '5 rounds');
    const h = c.trainer.history;
    expect(h.length).toBe(5);
    expect(h.at(-1)!.loss).toBeLessThan(h[0].loss);
    // The last acks may still be on their way to the workers.
    await until(() => acknowledgedIds(traces).length === c.trainer.samplesTrained, 10_000, 'the acks of every trained row');
    const ids = acknowledgedIds(traces);
    // 5 rounds x 2 workers x H 4 x B 2 rows = 80 rows > 48: the second epoch started; no id twice per epoch.
    expect(ids.length).toBe(c.trainer.samplesTrained);
    expect(c.trainer.doubled).toBe(0);
    const res = await fetch(`${c.url}/api/status`).then((r) => r.json());
    expect(res.mode).toBe('diloco');
    expect(res.round).toBe(5);
    expect(res.wire.bytesIn).toBeGreaterThan(0);
    expect(res.wire.bytesOut).toBeGreaterThan(0);
    expect(res.diloco.compress).toBe('int8');
    expect(res.tokensTrained).toBe(c.trainer.tokensTrained);
  });

  it('a worker killed mid-round loses no row: its rows go back to the pool and are trained later', async () => {
    const c = await coordinator({ maxSteps: 4, compress: 'int8', innerSteps: 6 });
    const traces: TraceEvent[][] = [[], [], []];
    await worker(c.url, traces[0], 'a').start();
    const victim = worker(c.url, traces[1], 'victim');
    await victim.start();
    await until(() => traces[1].some((e) => e.ev === 'task'), 30_000, 'the victim to get a round');
    await victim.stop('killed mid-round');
    await worker(c.url, traces[2], 'c').start();
    await until(() => c.trainer.finished, 90_000, '4 rounds');
    await until(() => acknowledgedIds(traces).length === c.trainer.samplesTrained, 10_000, 'the acks of every trained row');
    const ids = acknowledgedIds(traces);
    const victimRows = (traces[1].find((e) => e.ev === 'task') as { heads: number[][] }).heads.map((h) => syntheticId(h));
    const victimAcked = traces[1].some((e) => e.ev === 'ack');
    expect(victimAcked).toBe(false);
    // Everything acknowledged was trained exactly once (ledger), and the victim's rows were owed
    // and then trained by the others (those not still owed at the end).
    expect(ids.length).toBe(c.trainer.samplesTrained);
    expect(c.trainer.doubled).toBe(0);
    const owed = new Set(c.hub.rounds!.rounds.pool.map((r) => r.id));
    for (const id of victimRows) expect(ids.includes(id) || owed.has(id)).toBe(true);
  });

  it('a restarted coordinator resumes mid-run: round, outer momentum and owed rows', async () => {
    const c1 = await coordinator({ maxSteps: 0, compress: 'int8', checkpointEvery: 2 });
    await worker(c1.url, [], 'a').start();
    await until(() => c1.trainer.step >= 3, 60_000, '3 rounds');
    await c1.close({ checkpoint: true });
    const step = c1.trainer.step;
    const mom = new Float32Array(c1.hub.rounds!.rounds.outer.buf);
    const c2 = await coordinator({ maxSteps: 0, compress: 'int8' }, c1.dir);
    cleanups.push(() => rmSync(c1.dir, { recursive: true, force: true }));
    expect(c2.trainer.step).toBe(step);
    expect(c2.hub.rounds!.rounds.outer.buf).toEqual(mom);
    expect(c2.hub.rounds!.rounds.published).toEqual(c1.hub.rounds!.rounds.published);
    await worker(c2.url, [], 'b').start();
    await until(() => c2.trainer.step >= step + 2, 60_000, 'two more rounds after the restart');
    expect(c2.trainer.doubled).toBe(0);
  });

  it('an attacker sending a sign-flipped, scaled or NaN delta is refused and banned (recorded in the ban list); its deltas never reach the outer step', async () => {
    for (const attack of ['flip', 'scale', 'nan'] as const) {
      const c = await coordinator({ maxSteps: 0, compress: 'int8', quorum: 1 });
      await worker(c.url, [], 'honest').start();
      const log: string[] = [];
      c.bus.on('log', (e: { kind: string; message: string }) => log.push(`${e.kind}: ${e.message}`.slice(0, 200)));
      await until(() => c.trainer.step >= 1, 60_000, 'an honest round');
      const model = presetConfig('tiny');
      const s = io(c.url, { parser: msgpackParser, transports: ['websocket'], reconnection: false, forceNew: true });
      cleanups.push(() => s.close());
      let held: Float32Array | null = null;
      const rejects: Array<{ code: string }> = [];
      let banned = false;
      let myId = '';
      s.on('welcome', (m: { workerId: string }) => {
        myId = m.workerId;
        // Alive like a worker (a loaded machine took longer than dead-after to reach its round).
        const hb = setInterval(() => s.emit('heartbeat', { t: Date.now(), state: 'idle' }), 100);
        cleanups.push(() => clearInterval(hb));
      });
      s.on('params', (m: { params: Float32Array }) => { held = m.params; });
      s.on('reject', (m: { code: string }) => { rejects.push(m); if (m.code === 'BANNED') banned = true; });
      s.on('round', async (raw: unknown) => {
        const v = validateRoundTask(raw, model);
        if (!v.ok || !held) return;
        const t: RoundTaskMsg = v.value;
        // An honest-looking delta, then the attack: the weights of an honest worker's first round
        // are not known here, so use the published weights' own scale as the "delta".
        const delta = new Float32Array(held.length);
        for (let i = 0; i < delta.length; i++) delta[i] = 0.05 * held[i];
        if (attack === 'flip') for (let i = 0; i < delta.length; i++) delta[i] = -delta[i];
        else if (attack === 'scale') for (let i = 0; i < delta.length; i++) delta[i] *= 40;
        const packed = encode(delta, 'int8');
        if (attack === 'nan') packed.scales![0] = NaN;
        s.emit('delta', { taskId: t.taskId, round: t.round, version: t.version, tokens: t.tokens, loss: 2, delta: packed, timings: { totalMs: 1 } });
      });
      s.emit('hello', { protocol: PROTOCOL_VERSION, backend: 'cpu', adapter: { vendor: 'x', architecture: 'x', description: 'attacker', isSoftware: true }, limits: {}, probedBytes: 256 * 2 ** 20, name: `attacker-${attack}` });
      await until(() => banned, 60_000, `the ${attack} attacker to be banned`);
      expect(rejects.some((r) => (attack === 'nan' ? ['NON_FINITE'] : ['VERIFY_FAILED', 'NORM_OUTLIER']).includes(r.code))).toBe(true);
      // Recorded like any ban: the ban list (status, run dir) holds the attacker's id.
      expect(c.hub.security.summary().banned.map((b) => b.id)).toContain(myId);
      // Training goes on with the honest worker.
      const before = c.trainer.step;
      await until(() => c.trainer.step > before, 60_000, 'a round after the ban').catch((e: Error) => {
        // What the round was waiting for (a stuck round is a coordinator bug, not a slow machine).
        const r = c.hub.rounds!.rounds.current;
        const state = r && { round: r.round, active: [...r.active.values()].map((l) => ({ id: l.id, w: l.workerId, delivered: l.deliveredAt, expiresIn: l.expiresAt - Date.now() })), judging: [...r.judging], accepted: r.accepted.length, quorum: r.quorum, quorumMetAt: r.quorumMetAt };
        const workers = c.hub.workers.connected().map((x) => ({ id: x.id, state: x.state, lease: x.lease, role: x.plan.role }));
        const all = c.ctx.status().workers.map((x) => ({ id: x.id, name: x.name, state: x.state, rejected: x.rejectedByCode }));
        const bans = c.hub.security.summary().banned;
        throw new Error(`${e.message}; attack ${attack}; round ${JSON.stringify(state)}; workers ${JSON.stringify(workers)}; every worker ${JSON.stringify(all)}; bans ${JSON.stringify(bans)}; log ${JSON.stringify(log.slice(-12))}; finished ${c.trainer.finished}`);
      });
      void decode;
    }
  });
  it('--round-warmup: the first rounds lease its inner-step counts, then --inner-steps; the inner schedule runs on over them', async () => {
    const c = await coordinator({ maxSteps: 4, compress: 'int8', innerSteps: 4, roundWarmup: '1,2', verifyRate: 0 });
    const trace: TraceEvent[] = [];
    await worker(c.url, trace, 'a').start();
    await until(() => c.trainer.finished, 90_000, '4 rounds');
    // Rows the worker received per round (a task's step is its round): H x B (B = 2).
    const tasks = new Map<number, number>();
    for (const e of trace) if (e.ev === 'task') tasks.set(e.step, e.heads.length);
    const rows = [...tasks.entries()].sort((a, b) => a[0] - b[0]).map((x) => x[1]);
    expect(rows).toEqual([2, 4, 8, 8]);
    expect(c.trainer.samplesTrained).toBe(22);
    // Round r starts on the inner schedule where round r - 1 ended.
    const cfg = { innerSteps: 4, roundWarmup: '1,2' };
    expect([0, 1, 2, 3, 4].map((r) => roundStart(cfg, r))).toEqual([0, 1, 3, 7, 11]);
    expect([0, 1, 2, 3].map((r) => roundLength(cfg, r))).toEqual([1, 2, 4, 4]);
    expect(roundStart({ innerSteps: 50 }, 3)).toBe(150);
    expect(() => validateConfig({ mode: 'diloco', roundWarmup: '5,0' })).toThrow(/--round-warmup must be a comma-separated list/);
    expect(() => validateConfig({ mode: 'diloco', roundWarmup: '5,x' })).toThrow(/--round-warmup/);
    expect(() => validateConfig({ roundWarmup: '5' })).toThrow(/--round-warmup needs --mode diloco/);
  });
  it('--outer-momentum-end / --outer-lr-end: linear from the start values at round 0 to the end values at the schedule\'s last round', () => {
    const c = { compress: 'int8' as const, outerMomentumEnd: 0, outerLrEnd: 0.35 };
    expect(outerHyperAt(c, 0, 5)).toEqual({ lr: 0.7, momentum: 0.9 });
    const mid = outerHyperAt(c, 2, 5);
    expect(mid.lr).toBeCloseTo(0.525, 12);
    expect(mid.momentum).toBeCloseTo(0.45, 12);
    expect(outerHyperAt(c, 4, 5)).toEqual({ lr: 0.35, momentum: 0 });
    expect(outerHyperAt(c, 9, 5)).toEqual({ lr: 0.35, momentum: 0 });
    // The coordinator's default lands the momentum at 0; unset in the function: constant.
    expect(validateConfig({ mode: 'diloco' }).outerMomentumEnd).toBe(0);
    expect(outerHyperAt({ compress: 'int8' }, 4, 5)).toEqual({ lr: 0.7, momentum: 0.9 });
    expect(outerHyperAt({ compress: 'sparse' }, 4, 5)).toEqual({ lr: 1, momentum: 0 });
    expect(() => validateConfig({ mode: 'diloco', compress: 'sparse', outerMomentumEnd: 0.5 })).toThrow(/--outer-momentum-end must be 0 with --compress sparse/);
    expect(() => validateConfig({ mode: 'diloco', outerMomentumEnd: 1 })).toThrow(/--outer-momentum-end must be in \[0, 1\)/);
  });
  it('a lease whose delta arrived is not cut after the grace while the coordinator judges it; a second delta for it is a duplicate', () => {
    const cfg = validateConfig({ preset: 'tiny', runDir: '/tmp/unused', mode: 'diloco', innerSteps: 2, roundGraceMs: 100, quorum: 1 });
    const rt = new RoundTrainer(new Trainer(cfg, presetConfig('tiny'), syntheticDataset(SIZE, T)), cfg);
    expect(rt.begin(0, 3)).not.toBeNull();
    const [a, b, c] = ['wa', 'wb', 'wc'].map((w) => rt.lease(w, 2, 1, rt.takeRows(2), 10, 0, 60_000));
    rt.accept(a, encode(new Float32Array(rt.published.length), 'int8'), 10, 2, 10);
    // Quorum (1) met at t = 10; at t = 200 the grace is over: b and c would be cut...
    expect(rt.closable(200)).toBe(true);
    // ...but c's delta arrived and is being judged: the round waits for its verdict.
    rt.deliver(c, 150);
    expect(c.deliveredAt).toBe(150);
    expect(rt.closable(200)).toBe(false);
    // Refused (released) or accepted, the verdict ends the wait.
    rt.release(c.id, 'released');
    expect(rt.closable(200)).toBe(true);
    const { cut } = rt.close(200, 3);
    expect(cut.map((l) => l.id)).toEqual([b.id]);
  });

  it('inner learning rates: the run\'s schedule over its inner steps, as a sync run of the same tokens (WSD decays in a 5-round run too)', () => {
    for (const roundWarmup of [undefined, '10,15,25']) {
      const cfg = validateConfig({ preset: 'tiny', runDir: '/tmp/unused', mode: 'diloco', lr: 3e-3, warmupSteps: 10, maxSteps: roundWarmup ? 7 : 5, decaySteps: 0, innerSteps: 50, stableFraction: 0.8, ...(roundWarmup ? { roundWarmup } : {}) });
      const rt = new RoundTrainer(new Trainer(cfg, presetConfig('tiny'), syntheticDataset(SIZE, T)), cfg);
      const sync = runSchedule(cfg, 250);
      const lrs = Array.from({ length: cfg.maxSteps }, (_, r) => rt.lrs(r, rt.roundH(r))).flat();
      expect(lrs.length).toBe(250);
      expect(lrs).toEqual(Array.from({ length: 250 }, (_, s) => lrAt(s, sync)));
      expect(lrs.at(-1)!).toBeLessThan(1e-4);
    }
  });
});
