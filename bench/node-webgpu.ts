// WebGPU in Node for the benchmark: the engine's own Dawn GPU object (nodeGpu) and device request
// (requestEngineDevice: the adapter's own limits), also exposed as navigator.gpu because the
// peers (tfjs-backend-webgpu, @jax-js/jax) look for it there. tfjs shares our very device; jax-js
// requests its own from the same adapter.

import { nodeGpu } from '../worker-web/engine/node-gpu.ts';
import { requestEngineDevice, type EngineDevice } from '../worker-web/engine/device.ts';

export interface BenchGpu extends EngineDevice {
  gpu: GPU;
  /** "vendor / architecture / description", as the adapter reports it. */
  adapterName: string;
}

/** Node 20 has no navigator; 21+ has one without gpu. jax-js also reads navigator.userAgent. */
function installNavigatorGpu(gpu: GPU): void {
  const g = globalThis as unknown as { navigator?: Record<string, unknown> };
  if (!g.navigator) g.navigator = {};
  const nav = g.navigator;
  Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  if (typeof nav.userAgent !== 'string') {
    Object.defineProperty(nav, 'userAgent', { value: `Node.js/${process.versions.node}`, configurable: true });
  }
}

export async function openBenchGpu(): Promise<BenchGpu> {
  const gpu = nodeGpu();
  installNavigatorGpu(gpu);
  const ed = await requestEngineDevice(gpu);
  ed.device.addEventListener('uncapturederror', (e) => {
    console.error(`bench:kernels: uncaptured WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`);
  });
  const i = ed.info;
  const adapterName = [i.vendor, i.architecture, i.description, i.device].filter((s) => s).join(' / ') || 'unknown adapter';
  return { ...ed, gpu, adapterName };
}
