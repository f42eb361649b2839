// The WebGPU engine host on Dawn + SwiftShader: describes the adapter (software), probes memory up
// to the cap once per device, reports a device loss (not our own dispose) and gets a new device.
// The backend built on the device here is the CPU reference: what is under test is the host's
// device handling, which does not depend on the kernels.
import { describe, it, expect } from 'vitest';
import { nodeGpu } from '../../worker-web/engine/node-gpu.ts';
import { createWebGpuHost } from '../../worker-web/client/webgpu-host.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { presetConfig } from '../../shared/model/config.ts';

const MiB = 2 ** 20;

describe('createWebGpuHost (SwiftShader)', () => {
  it('describes the adapter, probes up to the cap, caches the probe', async () => {
    const host = createWebGpuHost(() => nodeGpu(), { probeCeilingBytes: 32 * MiB, createBackend: (_d, m) => createCpuBackend(m) });
    const d = await host.describe();
    expect(d.adapter.isSoftware).toBe(true);
    expect(d.adapter.architecture.toLowerCase()).toContain('swiftshader');
    expect(d.probedBytes).toBeGreaterThan(0);
    expect(d.probedBytes).toBeLessThanOrEqual(32 * MiB);
    expect(d.limits.maxBufferSize).toBeGreaterThan(0);
    expect(await host.describe()).toBe(d);
  });

  it('reports a real loss once, ignores its own dispose, and comes back with a new device', async () => {
    const host = createWebGpuHost(() => nodeGpu(), { probeCeilingBytes: 8 * MiB, createBackend: (_d, m) => createCpuBackend(m) });
    await host.describe();
    const model = presetConfig('tiny');
    const losses: string[] = [];
    const b1 = await host.create(model, (r) => losses.push(r));
    const dev1 = host.currentDevice()!;
    b1.dispose();
    dev1.device.destroy(); // after our own dispose: expected, not a loss
    await dev1.device.lost;
    await new Promise((r) => setTimeout(r, 20));
    expect(losses).toEqual([]);

    await host.describe(); // new device
    const dev2 = host.currentDevice()!;
    expect(dev2).not.toBe(dev1);
    const b2 = await host.create(model, (r) => losses.push(r));
    dev2.device.destroy(); // while the backend is in use: a loss
    await dev2.device.lost;
    await new Promise((r) => setTimeout(r, 20));
    expect(losses.length).toBe(1);
    b2.dispose();
    const d3 = await host.describe();
    expect(host.currentDevice()).not.toBe(dev2);
    expect(d3.probedBytes).toBeGreaterThan(0);
  });
});
