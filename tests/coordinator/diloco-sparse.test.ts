// --mode diloco --compress sparse (SparseLoCo): the outer step is published exactly, so the workers
// train from the outer weights themselves. Pins the defect that made sparse runs diverge (+51..145%
// eval loss in bench:comm): the coordinator used to publish top-k of a dense Nesterov step, the
// workers trained from weights that lagged the outer weights, and their deltas (taken from that
// stale point) kept being applied to theta. Checked from the outside: each worker's weights are
// rebuilt here from the `params` / `update` messages it received (its socket), and must equal the
// coordinator's outer weights bit for bit; each published update's support lies in the union of the
// round's sparse deltas (what the workers sent, seen on their sockets). The run starts with one
// dense round (--dense-rounds 1: int8 deltas, int8 outer step applied as published), and the sparse
// rounds' steps go down as sparsesum (the workers' packed deltas themselves, smaller than
// sparse32 with 2 workers), decoded by the workers to the same float32 bits.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { outerHyper, validateConfig } from '../../coordinator/config.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { decode, sparseCount, DEFAULT_CODEC_PARAMS, type PackedVector } from '../../shared/diloco/codec.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Seen {
  /** Weights rebuilt from what arrived: full params, then held + decode(update) (float32 adds). */
  held: Float32Array | null;
  version: number;
  /** Supports of the deltas this worker sent, by round. */
  sent: Map<number, Set<number>>;
  updates: Array<{ round: number; update: PackedVector }>;
}

type Sock = { on(e: string, f: (m: never) => void): void; emit: (e: string, ...a: unknown[]) => unknown };

function observe(seen: Seen) {
  return (raw: unknown) => {
    const s = raw as Sock;
    s.on('params', (m: { params: Float32Array; version: number }) => {
      seen.held = new Float32Array(m.params);
      seen.version = m.version;
    });
    s.on('update', (m: { fromVersion: number; version: number; round: number; update: PackedVector }) => {
      seen.updates.push({ round: m.round, update: m.update });
      if (!seen.held || seen.version !== m.fromVersion) return;
      const d = decode(m.update);
      const next = new Float32Array(seen.held.length);
      for (let i = 0; i < next.length; i++) next[i] = seen.held[i] + d[i];
      seen.held = next;
      seen.version = m.version;
    });
    const emit = s.emit.bind(s);
    s.emit = (e: string, ...a: unknown[]) => {
      if (e === 'delta') {
        const m = a[0] as { round: number; delta: PackedVector };
        const d = decode(m.delta);
        seen.sent.set(m.round, new Set([...d.keys()].filter((i) => d[i] !== 0)));
      }
      return emit(e, ...a);
    };
  };
}

describe('--mode diloco --compress sparse', () => {
  it('workers hold the outer weights exactly (int8 warm-up round, then sparsesum updates = -lr * mean of the sparse deltas), and the loss falls', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diloco-sparse-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
      adminToken: 'diloco-sparse-token', mode: 'diloco', compress: 'sparse', innerSteps: 4, maxMicroBatch: 2, lr: 3e-3, warmupSteps: 0,
      roundGraceMs: 300, heartbeatMs: 500, deadAfterMs: 20_000, seqLen: 16, maxSteps: 5, verifyRate: 0, minWorkers: 2, denseRounds: 1,
    }, { dataset: (t) => syntheticDataset(64, t) });
    cleanups.push(() => c.close());
    const rt = c.hub.rounds!.rounds;
    const seen: Seen[] = [0, 1].map(() => ({ held: null, version: -1, sent: new Map(), updates: [] }));
    for (const [i, s] of seen.entries()) {
      const w = new WorkerClient({ url: c.url, name: `w${i}`, host: createCpuHost({ description: 'test cpu', probedBytes: 256 * 2 ** 20 }), log: () => undefined, wrapSocket: observe(s) });
      cleanups.push(() => w.stop('test over'));
      await w.start();
    }
    const t0 = Date.now();
    while (!c.trainer.finished) {
      if (Date.now() - t0 > 90_000) throw new Error('5 sparse rounds did not finish in 90 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    const h = c.trainer.history;
    expect(h.length).toBe(5);
    expect(h.at(-1)!.loss).toBeLessThan(h[0].loss);
    // The coordinator keeps no hidden difference: published == theta.
    expect(rt.published).toEqual(c.trainer.params);
    // The last update (after round 4) was not sent (no round 5): apply it here to what the workers hold.
    const last = rt.lastUpdate!;
    expect(last.update.codec).toBe('sparsesum');
    for (const s of seen) {
      expect(s.version).toBe(last.fromVersion);
      const d = decode(last.update);
      const theta = Float32Array.from(s.held!, (x, i) => x + d[i]);
      expect(theta).toEqual(c.trainer.params);
      // Every update that arrived was int8 (after the dense round 0) or sparsesum (the first
      // weights came as full params; a worker that missed a round on a loaded machine gets full
      // params again, so count >= 1, not 4).
      expect(s.updates.length).toBeGreaterThan(0);
      for (const u of s.updates) expect(u.update.codec).toBe(u.round === 0 ? 'int8' : 'sparsesum');
    }
    // Each published update is supported on the union of the deltas sent in its round (the accepted
    // ones are among them), so it stays sparse: at most 2 workers x top-k.
    const updates = new Map<number, PackedVector>([...seen[0].updates, ...seen[1].updates].map((u) => [u.round, u.update]));
    updates.set(last.round, last.update);
    const kept = sparseCount(c.trainer.paramCount, DEFAULT_CODEC_PARAMS.chunk, DEFAULT_CODEC_PARAMS.topk);
    expect(updates.size).toBeGreaterThanOrEqual(3);
    updates.delete(0); // the dense round's int8 step
    for (const [r, update] of updates) {
      const union = new Set([...(seen[0].sent.get(r) ?? []), ...(seen[1].sent.get(r) ?? [])]);
      const u = decode(update);
      const support = [...u.keys()].filter((i) => u[i] !== 0);
      expect(support.length).toBeGreaterThan(0);
      expect(support.length).toBeLessThanOrEqual(2 * kept);
      for (const i of support) expect(union.has(i)).toBe(true);
    }
  }, 120_000);

  it('outer step defaults: 0.7 / 0.9 Nesterov, SparseLoCo 1 / 0 with sparse; sparse refuses momentum with a clear error', () => {
    expect(outerHyper(validateConfig({ mode: 'diloco' }))).toEqual({ lr: 0.7, momentum: 0.9 });
    expect(outerHyper(validateConfig({ mode: 'diloco', compress: 'sparse' }))).toEqual({ lr: 1, momentum: 0 });
    expect(outerHyper(validateConfig({ mode: 'diloco', compress: 'sparse', outerLr: 0.5, outerMomentum: 0 }))).toEqual({ lr: 0.5, momentum: 0 });
    expect(() => validateConfig({ mode: 'diloco', compress: 'sparse', outerMomentum: 0.9 })).toThrow(/outerMomentum: --outer-momentum must be 0 with --compress sparse/);
    expect(() => validateConfig({ mode: 'diloco', compress: 'int8', denseRounds: 1 })).toThrow(/--dense-rounds needs --mode diloco --compress sparse/);
  });
});
