// Churn in a pipeline (issue 12), with the product's Node worker as real processes at a 1 MiB cap
// (stages of the tiny model): the first stage is SIGKILLed while a share runs through the pipeline
// (it received that share's first micro-batch; the links are paced so the share is still in
// flight); a waiting worker takes its blocks; later the new first stage is killed with nobody
// waiting, a fresh worker joins and the three re-form a pipeline. Training continues, and every
// sample of both epochs is trained exactly once, counted from what the workers were sent (the
// first stage's hop rows in its --trace, self-describing data) and acknowledged for, not from the
// coordinator's counters (which must agree).
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, syntheticId } from '../../shared/data/index.ts';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { until } from './test-worker.ts';

const SIZE = 24;
const G = 8;
const STEPS = 6;
const procs: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'coord-pipe-churn-'));
afterAll(() => {
  procs.forEach((p) => p.exitCode === null && p.signalCode === null && p.kill('SIGKILL'));
  rmSync(dir, { recursive: true, force: true });
});

const names: string[] = [];
const byName = new Map<string, ChildProcess>();
function worker(url: string, name: string): ChildProcess {
  // 2 Mbit/s each way: a share takes a few hundred ms, so "mid-share" is not a race.
  const p = spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', url, '--backend', 'cpu', '--memory', '1MiB', '--name', name,
    '--quiet', '--link', '2mbit/2mbit', '--trace', join(dir, `${name}.trace`)], { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'] });
  procs.push(p);
  names.push(name);
  byName.set(name, p);
  return p;
}

type Line = { ev: string; taskId?: string; step?: number; micro?: number; heads?: number[][]; taskIds?: string[] };
function lines(name: string): Line[] {
  const f = join(dir, `${name}.trace`);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8').split('\n').filter(Boolean).flatMap((l) => {
    try {
      return [JSON.parse(l) as Line];
    } catch {
      return []; // a torn last line of a killed process
    }
  });
}

/** Rows of every share (its first stage's hops) and the shares some stage was acknowledged for. */
function audit() {
  const rows = new Map<string, Map<number, number[]>>();
  const acked = new Map<string, number>();
  for (const n of names) {
    for (const e of lines(n)) {
      if (e.ev === 'hop') {
        const m = rows.get(e.taskId!) ?? new Map<number, number[]>();
        m.set(e.micro!, e.heads!.map((h) => syntheticId(h)));
        rows.set(e.taskId!, m);
      } else if (e.ev === 'ack') acked.set(e.taskId!, e.step!);
      else if (e.ev === 'discard') for (const id of e.taskIds ?? []) acked.delete(id);
    }
  }
  return { rows, acked };
}

/** The worker whose trace shows micro-batch 0 of a share at step >= `step` that nobody was acknowledged for yet. */
function firstStageMidShare(step: number): { name: string; share: string } | null {
  const { acked } = audit();
  for (const n of names) {
    if (byName.get(n)!.exitCode !== null || byName.get(n)!.signalCode !== null) continue;
    for (const e of lines(n)) {
      if (e.ev === 'hop' && e.micro === 0 && Number(e.taskId!.split('.')[1]) >= step && !acked.has(e.taskId!)) return { name: n, share: e.taskId! };
    }
  }
  return null;
}

describe('pipeline churn (Node worker processes)', () => {
  it('a stage killed mid-share: the waiting worker takes it; killed again: a new worker joins; every sample exactly once', async () => {
    const c = await startCoordinator(
      { port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, globalBatch: G, maxSteps: STEPS, leaseMs: 120_000,
        evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0, activations: 'fp16' },
      { dataset: (T) => syntheticDataset(SIZE, T) },
    );
    try {
      for (const n of ['a', 'b', 'c', 'spare']) worker(c.url, n);
      const idOf = (n: string) => [...c.hub.workers.byId.values()].find((w) => w.hello.name === n)?.id;
      // One pipeline of three, the fourth waits (too small to be anything alone).
      await until(() => names.every((n) => idOf(n)) && (c.ctx.status().pipelines ?? []).length === 1, 60_000, 'a pipeline and a waiting worker');
      await until(() => audit().acked.size > 0, 60_000, 'a first acknowledged share');
      const waiting = c.ctx.status().workers.filter((w) => w.role === 'waiting').map((w) => w.id);
      expect(waiting).toHaveLength(1);

      // 1) Kill the first stage while a share runs: the waiting worker takes its blocks.
      let mid: ReturnType<typeof firstStageMidShare> = null;
      await until(() => (mid = firstStageMidShare(1)) !== null, 60_000, 'the first stage inside a share of step >= 1');
      const first = mid!;
      const layers = c.ctx.status().workers.find((w) => w.id === idOf(first.name))!.layers;
      byName.get(first.name)!.kill('SIGKILL');
      await until(() => (c.ctx.status().pipelines ?? [])[0]?.stages.some((s) => s.workerId === waiting[0]) ?? false, 30_000, 'the waiting worker in the pipeline');
      const p1 = c.ctx.status().pipelines![0];
      expect(p1.stages.find((s) => s.workerId === waiting[0])!.layers).toEqual(layers);

      // 2) Kill the (new) first stage with nobody waiting; a new worker joins; the three re-form.
      const stepNow = c.trainer.step;
      let mid2: ReturnType<typeof firstStageMidShare> = null;
      await until(() => (mid2 = firstStageMidShare(stepNow)) !== null && mid2.name !== first.name, 60_000, 'the first stage inside a later share');
      byName.get(mid2!.name)!.kill('SIGKILL');
      await until(() => (c.ctx.status().pipelines ?? []).length === 0, 30_000, 'the broken pipeline dissolved');
      worker(c.url, 'late');
      await until(() => c.trainer.step >= STEPS, 90_000, `${STEPS} steps after the kills`);
      expect((c.ctx.status().pipelines ?? [])[0]?.stages.some((s) => s.workerId === idOf('late'))).toBe(true);

      // The shares in flight at the kills were never acknowledged: their samples went back to the pool.
      const { rows, acked } = audit();
      expect(acked.has(first.share)).toBe(false);
      expect(acked.has(mid2!.share)).toBe(false);
      expect(rows.get(first.share)?.size).toBeGreaterThan(0);
      // Exactly once, from the workers' side: every id of each epoch in one acknowledged share.
      const per = new Map<number, number[]>();
      for (const [share, step] of acked) {
        const ids = [...(rows.get(share)?.values() ?? [])].flat();
        const epoch = Math.floor(step / (SIZE / G));
        per.set(epoch, [...(per.get(epoch) ?? []), ...ids]);
      }
      for (const e of [0, 1]) expect([...(per.get(e) ?? [])].sort((a, b) => a - b), `epoch ${e}`).toEqual(Array.from({ length: SIZE }, (_, i) => i));
      // The coordinator's books agree with that count.
      const s = c.ctx.status();
      expect(s.samplesTrained).toBe(STEPS * G);
      expect(s.accounting.doubled).toBe(0);
      expect(s.accounting.released).toBeGreaterThanOrEqual(2);
    } finally {
      await c.close();
    }
  }, 120_000);
});
