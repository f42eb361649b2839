// The Node worker's EngineHost: the CPU reference, or Dawn's WebGPU (npm `webgpu`) loaded only
// when asked for, so `--backend cpu` works on machines without Vulkan.

import os from 'node:os';
import type { EngineHost } from '../client/engine-host.ts';
import { createCpuHost } from '../client/cpu-host.ts';

export async function createNodeHost(backend: 'webgpu' | 'cpu', memoryCap?: number): Promise<EngineHost> {
  if (backend === 'cpu') {
    const cpus = os.cpus();
    return createCpuHost({
      architecture: os.arch(),
      description: `${cpus[0]?.model?.trim() ?? 'cpu'} x${cpus.length} (Node ${process.version})`,
      probedBytes: Math.min(os.freemem(), memoryCap ?? Infinity),
    });
  }
  const { nodeGpu } = await import('../engine/node-gpu.ts');
  const { createWebGpuHost } = await import('../client/webgpu-host.ts');
  const { createEngineBackend, createEngineStageBackend } = await import('../client/engine-factory.ts');
  return createWebGpuHost(() => nodeGpu(), { probeCeilingBytes: memoryCap, createBackend: createEngineBackend, createStageBackend: createEngineStageBackend });
}
