// --mode sync --compress fp16: workers send gradients as IEEE binary16 (grads16), the coordinator
// decodes them before the fold. Round trip through the validator; a float32 result is refused when
// fp16 was asked (and vice versa); end to end with real sockets and two CPU workers: the run trains
// (loss goes down) and the upload bytes counted at the coordinator's sockets are about half of an
// fp32 run's on the same data.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { validateConfig } from '../../coordinator/config.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { fromHalf, toHalf } from '../../shared/diloco/fp16.ts';
import type { ResultMsg } from '../../shared/protocol/messages.ts';
import { validateResult, validateTask } from '../../shared/protocol/validate.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import { packHalf } from '../../worker-web/client/replica-handler.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('sync mode, fp16 gradients', () => {
  it('round trip: grads16 decodes to the binary16 rounding of every value; both forms at once are refused', () => {
    const n = 1000;
    const grads = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 10 ** ((i % 9) - 6));
    const r: ResultMsg = { taskId: 't', step: 0, version: 0, loss: 1, tokens: 3, grads, gradNorm: 1, nonFinite: 0, timings: { totalMs: 1 } };
    const wire = packHalf(r) as unknown as Record<string, unknown>;
    expect(wire.grads).toBeUndefined();
    expect((wire.grads16 as Uint16Array).byteLength).toBe(2 * n);
    const v = validateResult(wire, { paramCount: n });
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.value.packed).toBe('fp16');
    for (let i = 0; i < n; i++) expect(v.value.grads[i]).toBe(Math.fround(fromHalf(toHalf(grads[i]))));
    const both = validateResult({ ...wire, grads }, { paramCount: n });
    expect(both.ok).toBe(false);
    const big = validateResult(packHalf({ ...r, grads: Float32Array.from(grads, (x, i) => (i === 7 ? 1e6 : x)) }), { paramCount: n });
    expect(!big.ok && big.code).toBe('NON_FINITE'); // overflows binary16 to Inf: refused by name
    const plain = validateResult(r, { paramCount: n });
    expect(plain.ok).toBe(true);
    if (plain.ok) expect(plain.value.packed).toBe(undefined);
  });

  it('config accepts --compress fp16 in sync, refuses int8; a task with another compress is refused', () => {
    expect(validateConfig({ mode: 'sync', compress: 'fp16' }).compress).toBe('fp16');
    expect(() => validateConfig({ mode: 'sync', compress: 'int8' })).toThrow(/--compress in --mode sync/);
    const model = presetConfig('tiny');
    const t = { taskId: 'x', step: 0, version: 0, B: 1, T: 2, inputs: new Int32Array(2), targets: new Int32Array(2), mask: new Uint8Array(2), tokens: 2, sampleIds: new Uint32Array(1), leaseMs: 10 };
    const ok = validateTask({ ...t, compress: 'fp16' }, model);
    expect(ok.ok && ok.value.compress).toBe('fp16');
    expect(validateTask({ ...t, compress: 'int8' }, model).ok).toBe(false);
  });

  it('trains end to end with two CPU workers; uploads ~half the bytes of fp32', async () => {
    const run = async (compress: 'none' | 'fp16') => {
      const c = await startCoordinator({
        port: 0, host: '127.0.0.1', preset: 'tiny', runDir: mkdtempSync(join(tmpdir(), 'fp16-')), evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
        adminToken: 'fp16-test-token', mode: 'sync', compress, lr: 3e-3, warmupSteps: 0, maxMicroBatch: 4, globalBatch: 8, maxSteps: 12, minWorkers: 2, seqLen: 16, seed: 3,
        heartbeatMs: 200, deadAfterMs: 3000, verifyRate: 0,
      }, { dataset: (t) => syntheticDataset(64, t) });
      cleanups.push(() => c.close());
      const ws = [1, 2].map((i) => new WorkerClient({ url: c.url, name: `w${i}`, host: createCpuHost({ description: 'test cpu', probedBytes: 256 * 2 ** 20 }), seed: i, log: () => undefined }));
      for (const w of ws) cleanups.push(() => w.stop('test over'));
      for (const w of ws) await w.start();
      const t0 = Date.now();
      while (!c.trainer.finished) {
        if (Date.now() - t0 > 60_000) throw new Error(`sync ${compress}: 12 steps not done in 60 s (step ${c.trainer.step})`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const s = c.ctx.status();
      const h = c.trainer.history;
      // Results sent, as the workers count them: how many tasks a step splits into depends on measured
      // throughput (timing), and every result carries a whole gradient, so bytes compare per result.
      const results = ws.reduce((a, w) => a + w.stats.tasksDone, 0);
      return { bytesIn: s.wire!.bytesIn, results, first: h[0].loss, last: h.at(-1)!.loss };
    };
    const f32 = await run('none');
    const f16 = await run('fp16');
    console.log(`sync 12 steps: fp32 in ${f32.bytesIn} B / ${f32.results} results loss ${f32.first.toFixed(4)} -> ${f32.last.toFixed(4)}; fp16 in ${f16.bytesIn} B / ${f16.results} results loss ${f16.first.toFixed(4)} -> ${f16.last.toFixed(4)}`);
    expect(f16.last).toBeLessThan(f16.first * 0.9);
    expect(Math.abs(f16.last - f32.last) / f32.last).toBeLessThan(0.02);
    const perResult = (r: { bytesIn: number; results: number }) => r.bytesIn / r.results;
    expect(perResult(f16) / perResult(f32)).toBeGreaterThan(0.45);
    expect(perResult(f16) / perResult(f32)).toBeLessThan(0.56);
  }, 150_000);
});
