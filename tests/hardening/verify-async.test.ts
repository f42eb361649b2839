// How verdicts computed on a verification thread come back into the coordinator's state: a norm
// outlier the sampler skipped is handed back to the hub and re-run with its verdict; a check that
// outlives its lease (the worker's connection dropped meanwhile) changes nothing.
import { afterAll, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { CoordinatorConfigInput } from '../../coordinator/config.ts';
import { startTestWorker, until, type TestWorker } from '../coordinator/test-worker.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

async function coordinator(extra: Partial<CoordinatorConfigInput>): Promise<CoordinatorHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'verify-async-'));
  const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, adminToken: 'verify-async', ...extra });
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

it('a norm outlier is re-computed off the loop, then judged: refused VERIFY_FAILED, counted once', async () => {
  // After probation (2 checked results) a worker is sampled with probability 0.001: its 7th result,
  // 50x too large, reaches the gate unverified, is deferred, re-computed, and run again.
  const c = await coordinator({ globalBatch: 2, maxMicroBatch: 1, verifyRate: 0.001 });
  const liar = worker(c.url, {
    alterResult: (res, n) => {
      if (n < 7) return;
      res.grads = res.grads.map((g) => 50 * g);
      res.gradNorm *= 50; // an honest report of the scaled gradient: only re-computation catches it
    },
  });
  // Wait for what the worker was answered, not for the coordinator's state: the ban is recorded
  // (isBanned) while the 8th result is judged, before its VERIFY_FAILED is even sent, and the
  // client reads that reject one event-loop turn or more later. BANNED is sent after it on the
  // same ordered connection, and after every counter read below was updated.
  await until(() => c.hub.security!.isBanned(liar.id()) && liar.rejects.some((r) => r.code === 'BANNED'), 60_000, 'the scaled worker banned, and told so');
  const s = c.hub.security!.summary();
  expect(liar.rejects.filter((r) => r.code === 'VERIFY_FAILED').length).toBe(2);
  expect(liar.acks.length).toBe(6);
  // 7th result: deferred outlier (counted on its re-run only); 8th: sampled (back on full checks).
  expect(s.counters.normOutliers).toBe(2);
  expect([s.verified, s.mismatches]).toEqual([4, 2]);
  expect(c.trainer.accounting().doubled).toBe(0);
});

it("a check whose worker's connection drops meanwhile changes nothing; another worker finishes the step", async () => {
  const c = await coordinator({ seqLen: 64, globalBatch: 16, maxMicroBatch: 16, verifyRate: 1, maxSteps: 1 });
  const verifier = c.hub.security!.verifier!;
  const gone = worker(c.url, {
    // The result is on its way to the thread when the connection goes.
    afterSend: () => void setTimeout(() => gone.close(), 20),
  });
  await until(() => gone.sent.size === 1 && c.hub.workers.connected().length === 0, 30_000, 'the first worker gone after sending');
  expect(verifier.pending).toBe(1);
  await until(() => verifier.pending === 0, 30_000, 'the orphaned check finished');
  expect(verifier.checks).toBe(1);
  expect(c.trainer.step).toBe(0);
  const next = worker(c.url);
  await until(() => c.trainer.finished && next.acks.length === 1, 60_000, 'the step finished by the second worker');
  expect(gone.acks).toEqual([]);
  expect(next.rejects).toEqual([]);
  const a = c.trainer.accounting();
  expect([a.trained, a.doubled]).toEqual([16, 0]);
});
