// The worker loop on the real WebGPU engine (Dawn + SwiftShader in Node) against the real
// coordinator: results are accepted; a device loss mid-run is reported, the engine is rebuilt on a
// new device, the parameters re-uploaded, and training continues under the same worker id.
import { afterAll, describe, expect, it } from 'vitest';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';
import { createWebGpuHost } from '../../worker-web/client/webgpu-host.ts';
import { createEngineBackend } from '../../worker-web/client/engine-factory.ts';
import { nodeGpu } from '../../worker-web/engine/node-gpu.ts';
import { tinyCoordinator, until } from './helpers.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterAll(async () => {
  for (const f of cleanups.reverse()) await f();
});

describe('WorkerClient on WebGPU (SwiftShader)', () => {
  it('trains, survives a device loss by rebuilding the engine, keeps its id', async () => {
    const c = await tinyCoordinator({ maxSteps: 0, globalBatch: 4, maxMicroBatch: 4 });
    cleanups.push(() => c.dispose());
    const host = createWebGpuHost(() => nodeGpu(), { probeCeilingBytes: 64 * 2 ** 20, createBackend: createEngineBackend });
    const logs: string[] = [];
    const w = new WorkerClient({ url: c.url, host, name: 'gpu', backoff: { baseMs: 100, maxMs: 400, factor: 2, jitter: 0.5 }, log: (l, m) => logs.push(`${l} ${m}`) });
    cleanups.push(() => w.stop('test over'));
    await w.start();
    expect(w.stats.adapter?.isSoftware).toBe(true);
    await until(() => w.stats.accepted >= 2, 90_000, 'two accepted WebGPU results');
    expect(w.stats.rejected).toBe(0);
    const id = w.stats.workerId;
    const first = host.currentDevice()!;
    first.device.destroy(); // the device goes away under the engine
    await until(() => w.stats.deviceLosses === 1, 10_000, 'the loss to be reported');
    const accepted = w.stats.accepted;
    await until(() => w.stats.accepted >= accepted + 2, 90_000, 'accepted results after the rebuild');
    expect(host.currentDevice()).not.toBe(first);
    expect(w.stats.workerId).toBe(id);
    expect(logs.some((l) => /engine rebuilt/.test(l))).toBe(true);
    const rec = c.hub.workers.byId.get(id!)!;
    expect(rec.hello.backend).toBe('webgpu');
    expect(rec.hello.adapter.isSoftware).toBe(true);
  });
});
