// The worker loop with the WebGPU host (Dawn + SwiftShader in Node) against the real coordinator.
// 1. The real engine: it compiles its kernels before taking any lease (no heartbeat or lease is
//    missed meanwhile), then its results are accepted.
// 2. Device loss: the host's real device is destroyed under a running worker; the loss is reported,
//    the lease returned (bye), a new device acquired, and training continues under the same id.
//    The backend on that device is the CPU reference so that this test does not pay two ~minute
//    SwiftShader compiles; the loss handling under test is the host's and the loop's.
import { afterAll, describe, expect, it } from 'vitest';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { createWebGpuHost } from '../../worker-web/client/webgpu-host.ts';
import { createEngineBackend } from '../../worker-web/client/engine-factory.ts';
import { nodeGpu } from '../../worker-web/engine/node-gpu.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { tinyCoordinator, until } from './helpers.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});
const FAST_BACKOFF = { baseMs: 100, maxMs: 400, factor: 2, jitter: 0.5 };

describe('WorkerClient with the WebGPU host (SwiftShader)', () => {
  it('the real engine warms up without holding a lease, then its results are accepted', async () => {
    const c = await tinyCoordinator({ maxSteps: 0, globalBatch: 4, maxMicroBatch: 4 });
    cleanups.push(() => c.dispose());
    const host = createWebGpuHost(() => nodeGpu(), { probeCeilingBytes: 64 * 2 ** 20, createBackend: createEngineBackend });
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
  }, 300_000);

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
