// Issue 17's defences against attackers that wait, collude and come back, each pinned so it fails
// without the behaviour: an unverifiable result is refused and re-leased (--verify-fail closed,
// the default) or accepted (open); a result unlike the accepted ones is re-computed whatever the
// worker's trust (a sleeper sampled at 0.001 is caught at once); a fresh identity from an address
// with a recent ban serves a longer probation; no identity or address is leased more than its share.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { CoordinatorConfigInput } from '../../coordinator/config.ts';
import { ShareCap } from '../../coordinator/server/share-cap.ts';
import type { WorkerView } from '../../coordinator/server/workers.ts';
import { StepWork } from '../../coordinator/train/step-work.ts';
import { syntheticDataset } from '../../shared/data/index.ts';
import { compareResult, BIAS_TOLERANCE_DIVISOR } from '../../coordinator/security/verify-compare.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { Rng } from '../../shared/rng.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';
import { parseFault } from '../../worker-web/client/faults.ts';
import type { TraceEvent } from '../../worker-web/client/trace.ts';
import { startTestWorker, until, type TestWorker } from '../coordinator/test-worker.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

async function coordinator(extra: Partial<CoordinatorConfigInput>): Promise<CoordinatorHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'defences17-'));
  const c = await startCoordinator(
    { port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, adminToken: 'defences17', rateLimit: 1000, ...extra },
    { dataset: (T) => syntheticDataset(256, T) },
  );
  cleanups.push(async () => {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return c;
}

function worker(url: string, o: Parameters<typeof startTestWorker>[1] = {}): TestWorker {
  const w = startTestWorker(url, o);
  cleanups.push(() => w.close());
  return w;
}

describe('--verify-fail', () => {
  it('closed (default): a sampled result whose check cannot run is refused UNVERIFIED, re-leased, never folded in, no penalty', async () => {
    const c = await coordinator({ globalBatch: 4, maxMicroBatch: 4, maxSteps: 2, verifyRate: 1 });
    const s = c.hub.security!;
    await s.verifier!.close(); // the verification threads are gone: every check fails
    const w = worker(c.url, { name: 'honest' });
    await until(() => w.rejects.filter((r) => r.code === 'UNVERIFIED').length >= 3, 30_000, 'three UNVERIFIED refusals');
    expect(c.trainer.step).toBe(0);
    expect(w.acks).toEqual([]);
    expect(s.counters.unverifiedRefused).toBeGreaterThanOrEqual(3);
    expect(s.isBanned(w.id()!)).toBe(false);
    expect(s.reputation.get(w.id()!).penalty).toBe(0);
  });

  it('open: the same result is accepted unverified and training goes on', async () => {
    const c = await coordinator({ globalBatch: 4, maxMicroBatch: 4, maxSteps: 2, verifyRate: 1, verifyFail: 'open' });
    const s = c.hub.security!;
    await s.verifier!.close();
    const w = worker(c.url, { name: 'honest' });
    await until(() => c.trainer.step >= 2, 30_000, 'two steps');
    expect(w.rejects).toEqual([]);
    expect(s.counters.unverifiedAccepted).toBeGreaterThanOrEqual(2);
  });
});

describe('unusual contributions and fresh identities', () => {
  it('a sleeper turning after 16 honest results at a 0.001 base rate is re-computed as unusual and banned at its 2nd lie; a fresh id from its address serves a longer probation', async () => {
    const c = await coordinator({ globalBatch: 4, maxMicroBatch: 2, maxSteps: 40, verifyRate: 0.001, normLimit: 1e6 });
    const s = c.hub.security!;
    const TURN = 16;
    worker(c.url, { name: 'honest' });
    const sleeper = worker(c.url, {
      name: 'sleeper',
      alterResult: (res, n) => {
        if (n > TURN) for (let i = 0; i < res.grads.length; i++) res.grads[i] = -res.grads[i]; // norm unchanged
      },
    });
    await until(() => sleeper.rejects.some((r) => r.code === 'BANNED'), 90_000, 'the sleeper banned');
    const lies = sleeper.tasks.length - TURN;
    expect(sleeper.rejects.filter((r) => r.code === 'VERIFY_FAILED').length).toBe(2);
    // Sampling alone (p = 0.001 after probation) would let ~1000 lies through before a check.
    expect(lies).toBeLessThanOrEqual(3);
    expect(sleeper.acks.length).toBeGreaterThanOrEqual(TURN - 1);
    expect(s.counters.unusual).toBeGreaterThanOrEqual(1); // the first lie: unusual, not sampled; then full checks
    // The banned worker comes back as a fresh identity from the same address: 2 + 4 always-checked results.
    const again = worker(c.url, { name: 'sleeper-again' });
    await again.welcome;
    expect(s.reputation.get(again.id()!).probation).toBe(6);
    expect(s.reputation.get(again.id()!).rateBoost).toBe(2); // then sampled at 2 x the base rate
    expect(s.counters.extendedProbation).toBe(1);
    expect(s.shareCapped(again.id()!)).toBe(true); // untrusted, and its address had a ban
    // A resumed identity is not fresh: the honest worker reconnecting keeps its normal probation.
    expect(s.reputation.get(sleeper.id()!).probation).toBeUndefined();
  }, 120_000);
});

describe('Sybil', () => {
  it('the sybil fault rejoins under a fresh identity after each ban; each one pays a longer probation and gets nothing folded in', async () => {
    const c = await coordinator({ globalBatch: 4, maxMicroBatch: 2, maxSteps: 30 });
    worker(c.url, { name: 'honest' });
    const events: TraceEvent[] = [];
    const sybil = new WorkerClient({ url: c.url, host: await createNodeHost('cpu'), name: 'sybil', fault: parseFault('sybil:sign-flip'), seed: 3, backoff: { baseMs: 50, maxMs: 200, factor: 2, jitter: 0 }, log: () => {}, trace: (e) => events.push(e) });
    await sybil.start();
    cleanups.push(() => sybil.stop('test over'));
    const s = c.hub.security!;
    await until(() => s.reputation.banned().length >= 3, 60_000, 'three identities banned');
    const ids = new Set(events.filter((e) => e.ev === 'welcome').map((e) => (e as { workerId: string }).workerId));
    expect(ids.size).toBeGreaterThanOrEqual(3);
    expect(events.filter((e) => e.ev === 'ack')).toEqual([]); // every lie checked in probation
    expect(s.counters.extendedProbation).toBeGreaterThanOrEqual(2);
    const probations = [...ids].map((id) => s.reputation.get(id).probation ?? 2);
    expect(Math.max(...probations)).toBeGreaterThanOrEqual(10); // 2 + 4 per earlier ban from its address
  }, 90_000);
});

describe('re-computation sees a small consistent bias', () => {
  it('a bias inside the L2 tolerance fails on the mean difference; an honest result passes both', async () => {
    const cfg = presetConfig('tiny');
    const cpu = createCpuBackend(cfg);
    await cpu.setParams(initParameters(cfg, 2));
    const rng = new Rng(4);
    const n = 2 * 16;
    const r = await cpu.forwardBackward({ B: 2, T: 16, inputs: Int32Array.from({ length: n }, () => rng.int(cfg.vocabSize)), targets: Int32Array.from({ length: n }, () => rng.int(cfg.vocabSize)), mask: new Uint8Array(n).fill(1) });
    const rms = r.gradNorm / Math.sqrt(r.grads.length);
    const tol = 0.05;
    const biased = r.grads.map((x) => x + 0.01 * rms); // 1% of the rms on every entry: L2 error 0.01
    const f = compareResult(r.grads, r.loss, biased, r.loss);
    expect(f.relErr).toBeLessThan(tol); // the L2 check alone lets it through
    expect(f.biasErr).toBeGreaterThan(tol / BIAS_TOLERANCE_DIVISOR);
    // Honest float noise (1e-4 relative per entry, random sign) stays far below the bias limit.
    const noisy = r.grads.map((x) => x * (1 + 1e-4 * (rng.next() * 2 - 1)));
    expect(compareResult(r.grads, r.loss, noisy, r.loss).biasErr).toBeLessThan(tol / BIAS_TOLERANCE_DIVISOR / 10);
    cpu.dispose();
  });
});

describe('share cap per identity and address', () => {
  const view = (id: string, address: string) => ({ id, socket: { handshake: { address } } }) as unknown as WorkerView;

  it('no identity, and no address, is leased more than max(--max-share, 1/n) of a step', () => {
    const work = new StepWork('n', 0, 0, 0, Array.from({ length: 16 }, (_, i) => i));
    const sybilA = view('s1', '10.0.0.9');
    const sybilB = view('s2', '10.0.0.9');
    const live = [sybilA, sybilB, view('h1', '10.0.0.1'), view('h2', '10.0.0.2')];
    const cap = new ShareCap(0.25);
    // 4 identities: 1/4 = 0.25 -> 4 samples each; 3 addresses: 1/3 -> ceil(16/3) = 6 for 10.0.0.9.
    expect(cap.room(work, sybilA, live)).toBe(4);
    work.lease('s1', 4, 0, 1000);
    expect(cap.room(work, sybilA, live)).toBe(0);
    expect(cap.room(work, sybilB, live)).toBe(2); // the address has 4 of its 6
    work.lease('s2', 2, 0, 1000);
    expect(cap.room(work, sybilB, live)).toBe(0);
    expect(cap.room(work, live[2], live)).toBe(4);
    // One address for everyone (a lab, loopback): its cap is the whole step.
    const lab = [view('a', '127.0.0.1'), view('b', '127.0.0.1')];
    expect(new ShareCap(0.25).room(new StepWork('n', 0, 0, 0, [0, 1, 2, 3, 4, 5, 6, 7]), lab[0], lab)).toBe(4);
    // Only untrusted identities are bound: a trusted fast worker may carry the whole step.
    const onlySybils = new ShareCap(0.25, (w) => w.id.startsWith('s'));
    expect(onlySybils.room(work, live[2], live)).toBe(Infinity);
    expect(onlySybils.room(work, sybilB, live)).toBe(0);
  });
});
