// The worker loop with the WebGPU host (Dawn + SwiftShader in Node) against the real coordinator.
// 1. The real engine: it compiles its kernels before taking any lease (no heartbeat or lease is
//    missed meanwhile), then its results are accepted.
// 2. Device loss: the host's real device is destroyed under a running worker; the loss is reported,
//    the lease returned (bye), a new device acquired, and training continues under the same id.
//    The backend on that device is the CPU reference so that this test does not pay two ~minute
//    SwiftShader compiles; the loss handling under test is the host's and the loop's.
// 3. The Node worker's host (createNodeHost('webgpu'), the one in test 1) runs a pipeline stage on
//    the engine, not the CPU fallback: a middle stage built by host.createStage on the same device
//    (its block kernels at the task shape are compiled already) matches the CPU stage.
import { afterAll, describe, expect, it } from 'vitest';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { createWebGpuHost } from '../../worker-web/client/webgpu-host.ts';
import { nodeGpu } from '../../worker-web/engine/node-gpu.ts';
import { createNodeHost } from '../../worker-web/node/host.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import { PRESETS } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildStageTable, gatherStage } from '../../shared/model/stage.ts';
import { Rng } from '../../shared/rng.ts';
import { tinyCoordinator, until } from './helpers.ts';

function close(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (1e-6 + 1e-3 * Math.abs(want[i])));
  expect(worst, what).toBeLessThanOrEqual(1);
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});
const FAST_BACKOFF = { baseMs: 100, maxMs: 400, factor: 2, jitter: 0.5 };

describe('WorkerClient with the WebGPU host (SwiftShader)', () => {
  it('the real engine warms up without holding a lease, then its results are accepted', async () => {
    const c = await tinyCoordinator({ maxSteps: 0, globalBatch: 4, maxMicroBatch: 4 });
    cleanups.push(() => c.dispose());
    const host = await createNodeHost('webgpu', 64 * 2 ** 20);
    const logs: string[] = [];
    const w = new WorkerClient({ url: c.url, host, name: 'gpu', backoff: FAST_BACKOFF, log: (l, m) => logs.push(`${l} ${m}`) });
    cleanups.push(() => w.stop('test over'));
    await w.start();
    expect(w.stats.adapter?.isSoftware).toBe(true);
    await until(() => w.stats.state === 'warming up', 10_000, 'the warm-up to start');
    const rec = () => c.hub.workers.byId.get(w.stats.workerId!)!;
    // While compiling it is not connected, so it holds no lease. The client's bye and disconnect
    // reach the coordinator asynchronously: wait for the coordinator to see the socket gone, then
    // check that this happened during the warm-up (a SwiftShader compile takes far longer).
    await until(() => rec().socket === null, 10_000, 'the coordinator to drop the warming-up socket');
    expect(w.stats.state).toBe('warming up');
    expect(rec().lease).toBeNull();
    await until(() => w.stats.accepted >= 1, 280_000, 'an accepted WebGPU result');
    expect(w.stats.rejected).toBe(0);
    expect(logs.some((l) => /engine ready in/.test(l))).toBe(true);
    expect(rec().hello.backend).toBe('webgpu');
    expect(rec().hello.adapter.isSoftware).toBe(true);

    // 3. The same host builds a middle pipeline stage on its device (engine, not CPU fallback).
    await w.stop('stage check');
    const t0 = Date.now();
    const model = PRESETS.tiny;
    const spec = { from: 1, to: 2 };
    const st = await host.createStage!(model, spec, () => undefined);
    const cpu = createCpuStageBackend(model, spec);
    try {
      expect(st.name).toBe('webgpu');
      const params = gatherStage(buildStageTable(model, spec), initParameters(model, 5));
      await st.setParams(params);
      await cpu.setParams(params);
      const rng = new Rng(9);
      const B = 4, T = 16; // the tasks' shape (global batch 4, the built-in task's 16 tokens)
      const acts = Float32Array.from({ length: B * T * model.nEmbd }, () => rng.normal());
      const dOut = Float32Array.from({ length: B * T * model.nEmbd }, () => rng.normal() * 0.01);
      close(await st.forward({ B, T, acts }), await cpu.forward({ B, T, acts }), 'stage output');
      const g = await st.forwardBackward({ B, T, acts }, dOut);
      const cg = await cpu.forwardBackward({ B, T, acts }, dOut);
      close(g.grads, cg.grads, 'stage grads');
      close(g.dIn!, cg.dIn!, 'stage dIn');
      expect(g.gradNorm).toBeCloseTo(cg.gradNorm, 4);
      expect([g.nonFinite, g.loss, g.tokens]).toEqual([0, undefined, undefined]);
      console.log(`webgpu-worker: the stage check took ${Date.now() - t0} ms`);
    } finally {
      st.dispose();
      cpu.dispose();
    }
  }, 420_000); // the engine's compile (minutes on a loaded SwiftShader) + the stage's few own kernels

  it('a lost device is reported, the lease returned, a new device acquired, and work continues under the same id', async () => {
    const c = await tinyCoordinator({ maxSteps: 0, globalBatch: 4, maxMicroBatch: 4 });
    cleanups.push(() => c.dispose());
    const host = createWebGpuHost(() => nodeGpu(), { probeCeilingBytes: 16 * 2 ** 20, createBackend: (_d, m) => createCpuBackend(m) });
    const logs: string[] = [];
    const w = new WorkerClient({ url: c.url, host, name: 'lossy', backoff: FAST_BACKOFF, log: (l, m) => logs.push(`${l} ${m}`) });
    cleanups.push(() => w.stop('test over'));
    await w.start();
    await until(() => w.stats.accepted >= 2, 60_000, 'two accepted results');
    const id = w.stats.workerId!;
    const first = host.currentDevice()!;
    first.device.destroy();
    await until(() => w.stats.deviceLosses === 1, 10_000, 'the loss to be reported');
    const accepted = w.stats.accepted;
    await until(() => w.stats.accepted >= accepted + 2, 60_000, 'accepted results after the rebuild');
    expect(host.currentDevice()).not.toBe(first);
    expect(w.stats.workerId).toBe(id);
    expect(w.stats.rejected).toBe(0);
    expect(logs.some((l) => /device lost/.test(l))).toBe(true);
  }, 120_000);
});
