// Workers fail; samples do not. Self-describing data (each row's first tokens encode its sample
// id) lets the test read, from what the workers actually computed and had acknowledged, that every
// sample of every epoch entered training exactly once, whatever happened to the leases.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, syntheticId } from '../../shared/data/index.ts';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { CoordinatorConfigInput } from '../../coordinator/config.ts';
import { settled, startTestWorker, until, type TestWorker } from './test-worker.ts';

const SIZE = 24; // samples per epoch
const G = 8; // 3 steps per epoch
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

async function coordinator(extra: Partial<CoordinatorConfigInput>): Promise<CoordinatorHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'coord-fault-'));
  const c = await startCoordinator(
    // Hardening checks that could refuse honest-but-unusual results (norm outliers on ragged
    // synthetic rows, re-computation sampling) are set aside: this file tests leases.
    { port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, globalBatch: G, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0, normLimit: 1e6, rateLimit: 1000, ...extra },
    { dataset: (T) => syntheticDataset(SIZE, T) },
  );
  cleanups.push(async () => {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return c;
}

/** Sample ids (decoded from the task rows themselves) of acknowledged results, per epoch. */
function trainedPerEpoch(ws: TestWorker[]): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const w of ws) {
    const acked = new Set(w.acks.map((a) => a.taskId));
    for (const t of w.tasks) {
      if (!acked.has(t.taskId)) continue;
      const epoch = Math.floor(t.step / (SIZE / G));
      const ids = out.get(epoch) ?? [];
      for (let b = 0; b < t.B; b++) ids.push(syntheticId(t.inputs.subarray(b * t.T, b * t.T + 3)));
      out.set(epoch, ids);
    }
  }
  return out;
}

function expectEachOnce(per: Map<number, number[]>, epochs: number): void {
  for (let e = 0; e < epochs; e++) {
    const ids = [...(per.get(e) ?? [])].sort((a, b) => a - b);
    expect(ids, `epoch ${e}`).toEqual(Array.from({ length: SIZE }, (_, i) => i));
  }
}

describe('no sample lost or doubled when workers fail', () => {
  it('a worker killed mid-step (connection dropped holding a lease): its samples are re-leased in the same step', async () => {
    const c = await coordinator({ maxSteps: 6, minWorkers: 2, maxMicroBatch: 4 });
    const steady = startTestWorker(c.url, { name: 'steady' });
    const victim = startTestWorker(c.url, { name: 'victim', beforeResult: (_t, n) => (n === 2 ? 'drop' : undefined) });
    cleanups.push(() => { steady.close(); victim.close(); });
    await until(() => c.trainer.step >= 6 && settled(steady) && settled(victim), 60_000, '6 steps, all results answered');
    const dropped = victim.tasks[1];
    expect(dropped).toBeDefined();
    expect(victim.acks.map((a) => a.taskId)).not.toContain(dropped.taskId);
    // The victim's samples of that step were trained by the survivor in the SAME step.
    const sameStep = steady.tasks.filter((t) => t.step === dropped.step && steady.acks.some((a) => a.taskId === t.taskId));
    const rescued = sameStep.flatMap((t) => Array.from(t.sampleIds));
    for (const id of dropped.sampleIds) expect(rescued).toContain(id);
    expectEachOnce(trainedPerEpoch([steady, victim]), 2);
    const s = c.ctx.status();
    expect(s.accounting.doubled).toBe(0);
    expect(s.accounting.released).toBeGreaterThanOrEqual(1);
    expect(s.samplesTrained).toBe(6 * G);
    expect(s.workers.find((w) => w.name === 'victim')?.state).toBe('left');
  });

  it('a silent worker is declared dead within dead-after-ms and its lease re-leased', async () => {
    const c = await coordinator({ maxSteps: 3, minWorkers: 2, maxMicroBatch: 4, heartbeatMs: 100, deadAfterMs: 800, leaseMs: 60_000 });
    const steady = startTestWorker(c.url, { name: 'steady' });
    const mute = startTestWorker(c.url, { name: 'mute', silentAfter: 0 });
    cleanups.push(() => { steady.close(); mute.close(); });
    const t0 = Date.now();
    await until(() => c.ctx.status().workers.some((w) => w.name === 'mute' && w.state === 'dead'), 10_000, 'mute declared dead');
    expect(Date.now() - t0).toBeLessThan(5_000);
    await until(() => c.trainer.step >= 3 && settled(steady), 30_000, '3 steps, all results answered');
    expectEachOnce(trainedPerEpoch([steady, mute]), 1);
    expect(c.ctx.status().accounting.doubled).toBe(0);
  });

  it('a late result for an expired, re-leased lease is rejected LATE and changes nothing', async () => {
    const c = await coordinator({ maxSteps: 3, minWorkers: 2, maxMicroBatch: 4, leaseMs: 300 });
    const slow = startTestWorker(c.url, { name: 'slow', beforeResult: (_t, n) => (n === 1 ? 1200 : undefined) });
    const fast = startTestWorker(c.url, { name: 'fast' });
    cleanups.push(() => { slow.close(); fast.close(); });
    await until(() => c.trainer.step >= 3 && slow.rejects.length > 0 && settled(slow) && settled(fast), 30_000, '3 steps and the late reject');
    const late = slow.rejects[0];
    expect(late).toMatchObject({ event: 'result', code: 'LATE', taskId: slow.tasks[0].taskId });
    expectEachOnce(trainedPerEpoch([slow, fast]), 1);
    const s = c.ctx.status();
    expect(s.accounting.doubled).toBe(0);
    expect(s.samplesTrained).toBe(3 * G);
    expect(s.workers.find((w) => w.name === 'slow')?.rejectedByCode).toEqual({ LATE: 1 });
  });

  it('workers slower than --lease-ms are not re-leased forever: late answers measure them and leases stretch', async () => {
    const c = await coordinator({ maxSteps: 3, minWorkers: 2, maxMicroBatch: 4, leaseMs: 150 });
    const a = startTestWorker(c.url, { name: 'a', beforeResult: () => 500 });
    const b = startTestWorker(c.url, { name: 'b', beforeResult: () => 500 });
    cleanups.push(() => { a.close(); b.close(); });
    await until(() => c.trainer.step >= 3 && settled(a) && settled(b), 30_000, '3 steps with two slow workers');
    const late = [...a.rejects, ...b.rejects].filter((r) => r.code === 'LATE').length;
    expect(late).toBeGreaterThanOrEqual(1); // the first leases did expire...
    expect(late).toBeLessThanOrEqual(4); // ...but later ones were long enough
    expect(Math.max(...[...a.tasks, ...b.tasks].map((t) => t.leaseMs))).toBeGreaterThan(150);
    expectEachOnce(trainedPerEpoch([a, b]), 1);
  });
});
