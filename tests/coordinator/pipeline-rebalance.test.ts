// Rebalancing pipelines with hysteresis (issue 12, docs/pipeline.md "Churn"): real sockets, the
// product's worker loop (WorkerClient) on the CPU backends, 1 MiB caps (stages of the tiny model:
// three make one pipeline, a fourth waits).
// (a) A fourth worker as fast as the others joins a measured pipeline: re-forming would not be
//     clearly faster, so nothing moves: the pipeline keeps its id, members and layers, and the
//     newcomer is never sent a share.
// (b) One stage is a slow device (`--fault slow:MS`: each hop computes MS ms longer) and a fourth
//     worker waits: once the speeds are measured the planner expects re-forming without the slow
//     one to be clearly faster (Petals' 1/0.75), the running share finishes, the pipeline is
//     re-formed, training goes on, and every sample is trained exactly once, counted from the
//     workers' traces (the first stage's hop rows, self-describing data; acks minus discards).
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, syntheticId } from '../../shared/data/index.ts';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import type { FaultSpec } from '../../worker-web/client/faults.ts';
import type { TraceEvent } from '../../worker-web/client/trace.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { until } from './test-worker.ts';

const SIZE = 24;
const G = 8;
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

async function cluster(steps: number) {
  const dir = mkdtempSync(join(tmpdir(), 'coord-pipe-rebalance-'));
  const c: CoordinatorHandle = await startCoordinator(
    { port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, globalBatch: G, maxSteps: steps, leaseMs: 120_000,
      evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0, activations: 'fp16' },
    { dataset: (T) => syntheticDataset(SIZE, T) },
  );
  cleanups.push(async () => {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const traces = new Map<string, TraceEvent[]>();
  const start = async (name: string, fault: FaultSpec = { kind: 'none' }) => {
    const t: TraceEvent[] = [];
    traces.set(name, t);
    const w = new WorkerClient({
      url: c.url, name, userCapBytes: 2 ** 20, seed: traces.size, fault, log: () => undefined, trace: (e) => void t.push(e),
      host: createCpuHost({ description: 'test cpu', probedBytes: 2 ** 20 }),
    });
    cleanups.push(() => w.stop('test over'));
    await w.start();
    return w;
  };
  const idOf = (name: string) => c.ctx.status().workers.find((w) => w.name === name)?.id;
  const pipelines = () => c.ctx.status().pipelines ?? [];
  /** Share ids acknowledged (minus discarded) per worker name. */
  const acked = (name: string) => {
    const out = new Map<string, number>();
    for (const e of traces.get(name) ?? []) {
      if (e.ev === 'ack') out.set(e.taskId, e.step);
      else if (e.ev === 'discard') for (const id of e.taskIds) out.delete(id);
    }
    return out;
  };
  /** Every sample of each finished epoch in exactly one acknowledged share, from the workers' traces. */
  const exactlyOnce = () => {
    const rows = new Map<string, number[]>();
    const shares = new Map<string, number>();
    for (const [name, t] of traces) {
      // Mask-0 padding rows of a short last micro-batch are all token 0 (no sample).
      for (const e of t) if (e.ev === 'hop') rows.set(`${e.taskId}#${e.micro}`, e.heads.filter((h) => h.some((x) => x !== 0)).map((h) => syntheticId(h)));
      for (const [id, step] of acked(name)) shares.set(id, step);
    }
    const per = new Map<number, number[]>();
    for (const [share, step] of shares) {
      const ids = [...rows].filter(([k]) => k.startsWith(`${share}#`)).flatMap(([, v]) => v);
      expect(ids.length, `rows of acknowledged share ${share}`).toBeGreaterThan(0);
      const epoch = Math.floor(step / (SIZE / G));
      per.set(epoch, [...(per.get(epoch) ?? []), ...ids]);
    }
    const epochs = Math.floor(c.trainer.step / (SIZE / G));
    for (let e = 0; e < epochs; e++) {
      expect([...(per.get(e) ?? [])].sort((a, b) => a - b), `epoch ${e}`).toEqual(Array.from({ length: SIZE }, (_, i) => i));
    }
  };
  return { c, start, idOf, pipelines, acked, exactlyOnce, traces };
}

describe('pipeline rebalancing with hysteresis', () => {
  it('(a) a join that would not be clearly faster moves nobody', async () => {
    const STEPS = 9;
    const k = await cluster(STEPS);
    for (const n of ['a', 'b', 'c']) await k.start(n);
    await until(() => k.pipelines().length === 1, 30_000, 'a pipeline of three');
    // Measured first (every member's speed known: the rebalancing check is live), then the join.
    await until(() => k.c.trainer.step >= 2, 30_000, 'two steps');
    const before = k.pipelines()[0];
    const joinedAt = k.c.trainer.step;
    await k.start('d');
    await until(() => k.c.trainer.step >= STEPS, 60_000, `${STEPS} steps`);
    await until(() => ['a', 'b', 'c'].every((n) => [...k.acked(n).values()].includes(STEPS - 1)), 10_000, 'the last acks');

    const after = k.pipelines();
    expect(after.map((p) => p.id)).toEqual([before.id]);
    expect(after[0].stages.map((s) => [s.workerId, s.layers])).toEqual(before.stages.map((s) => [s.workerId, s.layers]));
    const rows = k.c.ctx.status().workers;
    expect(rows.find((w) => w.name === 'd')!.role).toBe('waiting');
    // From the workers' side: the newcomer was never sent a share's rows nor acknowledged; the three were, every step.
    expect(k.traces.get('d')!.filter((e) => e.ev === 'hop' || e.ev === 'ack')).toEqual([]);
    for (const n of ['a', 'b', 'c']) expect(new Set(k.acked(n).values()), n).toEqual(new Set(Array.from({ length: STEPS }, (_, i) => i)));
    expect(STEPS - joinedAt).toBeGreaterThanOrEqual(6); // several rebalancing checks ran with the newcomer waiting
    k.exactlyOnce();
  }, 90_000);

  it('(b) a slow stage with a faster worker waiting: re-formed once, training goes on, every sample once', async () => {
    const STEPS = 9;
    const k = await cluster(STEPS);
    await k.start('slow', { kind: 'slow', ms: 60 });
    for (const n of ['f1', 'f2']) await k.start(n);
    await until(() => k.pipelines().length === 1, 30_000, 'a pipeline with the slow worker');
    const first = k.pipelines()[0];
    expect(first.stages.map((s) => s.workerId)).toContain(k.idOf('slow'));
    await until(() => k.c.trainer.step >= 1, 30_000, 'a first step');
    await k.start('f3');
    await until(() => k.pipelines().some((p) => p.id !== first.id), 60_000, 'the pipeline re-formed');
    const second = k.pipelines()[0];
    const reformedAt = k.c.trainer.step;
    expect(second.stages.map((s) => s.workerId).sort()).toEqual(['f1', 'f2', 'f3'].map((n) => k.idOf(n)).sort());
    await until(() => k.c.trainer.step >= STEPS, 60_000, `${STEPS} steps`);
    await until(() => ['f1', 'f2', 'f3'].every((n) => [...k.acked(n).values()].includes(STEPS - 1)), 10_000, 'the last acks');

    // Re-formed once: the second pipeline still runs; the slow worker waits.
    expect(k.pipelines().map((p) => p.id)).toEqual([second.id]);
    expect(k.c.ctx.status().workers.find((w) => w.name === 'slow')!.role).toBe('waiting');
    // From the workers' side: the slow one was acknowledged only before the re-forming, the newcomer after it.
    const slowSteps = [...k.acked('slow').values()];
    expect(slowSteps.length).toBeGreaterThan(0);
    expect(Math.max(...slowSteps)).toBeLessThanOrEqual(reformedAt);
    expect(Math.min(...k.acked('f3').values())).toBeGreaterThanOrEqual(reformedAt);
    expect(new Set(k.acked('f1').values())).toEqual(new Set(Array.from({ length: STEPS }, (_, i) => i)));
    k.exactlyOnce();
    const s = k.c.ctx.status();
    expect(s.samplesTrained).toBe(STEPS * G);
    expect(s.accounting.doubled).toBe(0);
  }, 120_000);
});
