// With the product's Node worker (`npm run worker`, worker-web/node/main.ts) as real processes:
// one is SIGKILLed while it holds a lease (mid-step); its samples are re-leased at once (well
// before the lease timeout) and every sample of both epochs is trained exactly once, counted from
// what the workers were acknowledged for (their --trace files, rows decoded here), and the
// coordinator's own counters agree with that count.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, syntheticId } from '../../shared/data/index.ts';
import { parseTrace } from '../chaos/accounting.ts';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { until } from './test-worker.ts';

const SIZE = 24;
const G = 8;
const procs: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'coord-nodeworker-'));
afterAll(() => {
  procs.forEach((p) => p.exitCode === null && p.signalCode === null && p.kill('SIGKILL'));
  rmSync(dir, { recursive: true, force: true });
});

function worker(url: string, name: string, extra: string[] = []): ChildProcess {
  const p = spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', url, '--backend', 'cpu', '--memory', '1GiB', '--name', name, '--quiet',
    '--trace', join(dir, `${name}.trace`), ...extra], {
    cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'],
  });
  procs.push(p);
  return p;
}

/** Sample ids per epoch, from the acknowledged (and not discarded) tasks in the workers' traces. */
function acknowledgedPerEpoch(names: string[]): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const name of names) {
    const file = join(dir, `${name}.trace`);
    if (!existsSync(file)) continue;
    const heads = new Map<string, number[][]>();
    const acked = new Map<string, number>();
    for (const e of parseTrace(readFileSync(file, 'utf8'))) {
      if (e.ev === 'task') heads.set(e.taskId, e.heads);
      else if (e.ev === 'ack') acked.set(e.taskId, e.step);
      else if (e.ev === 'discard') for (const id of e.taskIds) acked.delete(id);
    }
    for (const [task, step] of acked) {
      const epoch = Math.floor(step / (SIZE / G));
      out.set(epoch, [...(out.get(epoch) ?? []), ...(heads.get(task) ?? []).map((h) => syntheticId(h))]);
    }
  }
  return out;
}

describe('Node worker processes', () => {
  it('a worker process killed mid-step (SIGKILL while holding a lease) loses no sample', async () => {
    const c = await startCoordinator(
      { port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, globalBatch: G, maxSteps: 6, minWorkers: 2, maxMicroBatch: 4,
        leaseMs: 120_000, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0, normLimit: 1e6 },
      { dataset: (T) => syntheticDataset(SIZE, T) },
    );
    try {
      worker(c.url, 'steady');
      const victim = worker(c.url, 'victim', ['--fault', 'slow:3000']);
      const row = () => [...c.hub.workers.byId.values()].find((w) => w.hello.name === 'victim');
      // Holding a lease: the victim computes, then sits on its result for 3 s (slow fault).
      await until(() => !!row()?.lease && c.trainer.current?.active.has(row()!.lease!) === true, 60_000, 'victim holding a lease');
      await new Promise((r) => setTimeout(r, 300));
      const held = c.trainer.current!.active.get(row()!.lease!)!;
      const stepAtKill = c.trainer.step;
      victim.kill('SIGKILL');
      const killedAt = Date.now();
      await until(() => c.trainer.step >= 6, 60_000, '6 steps after the kill');
      expect(Date.now() - killedAt).toBeLessThan(60_000); // far below the 120 s lease: re-leased on disconnect
      expect(held.step).toBe(stepAtKill);
      // Exactly once, from the workers' side: every id of each epoch acknowledged once.
      const per = acknowledgedPerEpoch(['steady', 'victim']);
      for (const e of [0, 1]) expect([...(per.get(e) ?? [])].sort((a, b) => a - b), `epoch ${e}`).toEqual(Array.from({ length: SIZE }, (_, i) => i));
      // The coordinator's books agree with that count.
      const s = c.ctx.status();
      expect(s.samplesTrained).toBe((per.get(0)?.length ?? 0) + (per.get(1)?.length ?? 0));
      expect(s.accounting.doubled).toBe(0);
      expect(c.trainer.ledger.complete(0)).toBe(true);
      expect(c.trainer.ledger.complete(1)).toBe(true);
      expect(s.accounting.released).toBeGreaterThanOrEqual(1);
      expect(s.workers.find((w) => w.name === 'victim')?.state).toMatch(/left|dead/);
    } finally {
      await c.close();
    }
  });
});
