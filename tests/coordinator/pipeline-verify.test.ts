// Security per stage (issue 12): the coordinator re-computes a pipeline's share on its CPU from the
// stage inputs it relayed. A stage worker that scales its gradient (`--fault scale:8`, the product
// worker's fault seam) is named by the re-computation: its shares are refused (VERIFY_FAILED, seen
// by the worker), never acknowledged, and after two mismatches it is banned; the waiting honest
// worker takes its blocks and training finishes with every sample once. Real sockets, the product
// worker loop (WorkerClient) on the CPU backends.
// A ban of a stage worker also discards its pipeline's shares already folded into the running step
// (the trainer holds them under the pipeline's id): they are re-leased, every stage of them is
// told `discard`, and every sample is still trained exactly once, counted from the workers' traces.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticDataset, syntheticId } from '../../shared/data/index.ts';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import type { FaultSpec } from '../../worker-web/client/faults.ts';
import type { TraceEvent } from '../../worker-web/client/trace.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { until } from './test-worker.ts';

const STEPS = 6;
const G = 8;
const dir = mkdtempSync(join(tmpdir(), 'coord-pipe-verify-'));
const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
  rmSync(dir, { recursive: true, force: true });
});

describe('pipeline verification', () => {
  it('a stage that lies about its gradient is caught by re-computation, banned and replaced', async () => {
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, seqLen: 16, globalBatch: G, maxSteps: STEPS, lr: 3e-3, warmupSteps: 2,
      evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 1, activations: 'fp16',
    });
    cleanups.push(() => c.close());
    const start = (name: string, fault: FaultSpec = { kind: 'none' }) => {
      const w = new WorkerClient({
        url: c.url, name, userCapBytes: 2 ** 20, seed: name.length, fault, log: () => undefined,
        host: createCpuHost({ description: 'test cpu', probedBytes: 2 ** 20 }),
      });
      cleanups.push(() => w.stop('test over'));
      return w;
    };
    const liar = start('liar', { kind: 'scale', factor: 8 });
    const honest = [start('h1'), start('h2')];
    for (const w of [liar, ...honest]) await w.start();
    await until(() => (c.ctx.status().pipelines ?? []).length === 1, 30_000, 'a pipeline of the liar and two honest workers');
    const liarLayers = c.ctx.status().workers.find((w) => w.name === 'liar')!.layers;
    const spare = start('spare');
    await spare.start();
    await until(() => c.trainer.step >= STEPS, 50_000, `${STEPS} steps`);

    // From the workers' side: the liar's shares were refused by re-computation and never acknowledged.
    expect(liar.stats.rejectedByCode.VERIFY_FAILED ?? 0).toBeGreaterThanOrEqual(1);
    expect(liar.stats.accepted).toBe(0);
    expect(liar.stats.rejectedByCode.BANNED ?? 0).toBe(1);
    expect(spare.stats.accepted).toBeGreaterThan(0);
    // The spare holds the liar's blocks; the liar is banned.
    const s = c.ctx.status();
    const spareRow = s.workers.find((w) => w.name === 'spare')!;
    expect(spareRow.role).toBe('stage');
    expect(spareRow.layers).toEqual(liarLayers);
    expect(s.security?.banned.map((b) => b.id)).toContain(s.workers.find((w) => w.name === 'liar')!.id);
    // Honest workers were never refused; every sample was trained once.
    for (const w of [...honest, spare]) expect(Object.keys(w.stats.rejectedByCode)).toEqual([]);
    expect(s.samplesTrained).toBe(STEPS * G);
    expect(s.accounting.doubled).toBe(0);
    // The shares were re-computed by the verification threads' Verifier (the replicas' pool), off the event loop.
    expect(s.security!.mismatches).toBeGreaterThanOrEqual(2);
    expect(s.security!.verified).toBeGreaterThan(s.security!.mismatches);
  }, 60_000);

  it("a banned stage worker's pipeline shares already in the step are discarded, re-leased and trained once", async () => {
    const SIZE = 24;
    const c = await startCoordinator(
      { port: 0, host: '127.0.0.1', preset: 'tiny', runDir: join(dir, 'ban'), seqLen: 16, globalBatch: G, maxSteps: STEPS, lr: 3e-3, warmupSteps: 2,
        evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false, verifyRate: 0, activations: 'fp16', aggregate: 'trimmed-mean', leaseMs: 120_000 },
      { dataset: (T) => syntheticDataset(SIZE, T) },
    );
    cleanups.push(() => c.close());
    const traces = new Map<string, TraceEvent[]>();
    const start = async (name: string, cap: number | undefined, fault: FaultSpec = { kind: 'none' }) => {
      const t: TraceEvent[] = [];
      traces.set(name, t);
      const w = new WorkerClient({
        url: c.url, name, userCapBytes: cap, seed: traces.size, fault, log: () => undefined, trace: (e) => void t.push(e),
        host: createCpuHost({ description: 'test cpu', probedBytes: cap ?? 2 ** 30 }),
      });
      cleanups.push(() => w.stop('test over'));
      await w.start();
      return w;
    };
    const acked = (name: string) => {
      const out = new Map<string, number>();
      for (const e of traces.get(name) ?? []) {
        if (e.ev === 'ack') out.set(e.taskId, e.step);
        else if (e.ev === 'discard') for (const id of e.taskIds) out.delete(id);
      }
      return out;
    };
    const banned = await start('s2', 2 ** 20);
    for (const n of ['s1', 's3']) await start(n, 2 ** 20);
    await until(() => (c.ctx.status().pipelines ?? []).length === 1, 30_000, 'a pipeline of three');
    await start('spare', 2 ** 20);
    // A replica beside it whose results come late (--fault slow): the step stays open after the pipeline's share is in.
    await start('replica', undefined, { kind: 'slow', ms: 1500 });
    let share = '';
    await until(() => {
      const now = c.trainer.step;
      share = [...acked('s1')].find(([, step]) => step === now && now >= 1)?.[0] ?? '';
      return share !== '';
    }, 40_000, "a pipeline share of the running step acknowledged while the replica's is not in yet");
    const s2 = c.ctx.status().workers.find((w) => w.name === 's2')!;
    // A ban verdict, carried out as the assigners do (recorded in the reputation, then the gateway's ban).
    const verdict = c.hub.security.reputation.banNow(s2.id, 'test: a verdict against a stage worker');
    expect(verdict.ban).toBe(true);
    if (verdict.ban) c.hub.gateway.ban(c.hub.workers.byId.get(s2.id)!, verdict.reason);
    await until(() => c.trainer.step >= STEPS, 60_000, `${STEPS} steps after the ban`);
    await until(() => ['s1', 's3', 'spare'].every((n) => [...acked(n).values()].includes(STEPS - 1)), 10_000, 'the last acks');

    // Every stage of the discarded share was told so; the banned one was refused and is out.
    for (const n of ['s1', 's3']) expect(traces.get(n)!.some((e) => e.ev === 'discard' && e.taskIds.includes(share)), n).toBe(true);
    expect(banned.stats.rejectedByCode.BANNED ?? 0).toBe(1);
    const st = c.ctx.status();
    expect(st.security?.banned.map((b) => b.id)).toContain(s2.id);
    expect(st.security?.counters.discardedResults).toBeGreaterThanOrEqual(1);
    expect(st.workers.find((w) => w.name === 'spare')!.layers).toEqual(s2.layers);
    // Exactly once, from the workers' side: rows of every acknowledged (not discarded) share or task.
    const perEpoch = () => {
      const rows = new Map<string, number[]>();
      const kept = new Map<string, number>();
      for (const [name, t] of traces) {
        for (const e of t) {
          const ids = (h: number[][]) => h.filter((r) => r.some((x) => x !== 0)).map((r) => syntheticId(r)); // padding rows: all 0
          if (e.ev === 'hop') rows.set(`${e.taskId}#${e.micro}`, ids(e.heads));
          if (e.ev === 'task') rows.set(`${e.taskId}#t`, ids(e.heads));
        }
        // The banned worker is not told `discard` (it is gone): what counts is what the others were acknowledged for.
        if (name !== 's2') for (const [id, step] of acked(name)) kept.set(id, step);
      }
      expect(kept.has(share)).toBe(false);
      const per = new Map<number, number[]>();
      for (const [id, step] of kept) {
        const ids = [...rows].filter(([k]) => k.startsWith(`${id}#`)).flatMap(([, v]) => v);
        per.set(Math.floor(step / (SIZE / G)), [...(per.get(Math.floor(step / (SIZE / G))) ?? []), ...ids]);
      }
      return per;
    };
    const EPOCHS = Math.floor(STEPS / (SIZE / G));
    // The replica's ack of the last step may reach it after the stage workers' acks: wait until every epoch has
    // its SIZE rows acknowledged somewhere (a lost row times out here), then check that each is there exactly once.
    await until(() => Array.from({ length: EPOCHS }, (_, e) => perEpoch().get(e)?.length ?? 0).every((n) => n >= SIZE), 10_000, 'every epoch acknowledged');
    const per = perEpoch();
    for (let e = 0; e < EPOCHS; e++) {
      expect([...(per.get(e) ?? [])].sort((a, b) => a - b), `epoch ${e}`).toEqual(Array.from({ length: SIZE }, (_, i) => i));
    }
    expect(st.samplesTrained).toBe(STEPS * G);
    expect(st.accounting.doubled).toBe(0);
  }, 90_000);
});
