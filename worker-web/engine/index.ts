// Public surface of the WebGPU engine (browser-safe; Node callers add node-gpu.ts themselves).
export { createWebGpuBackend, type WebGpuBackend, type WebGpuBackendOptions, type DeviceLossReport } from './backend.ts';
export { requestEngineDevice, adapterInfo, type AdapterInfo, type EngineDevice } from './device.ts';
export { probeMemory, type MemoryProbe } from './memory.ts';
export { planEngine, paddedLayout, type EnginePlan } from './plan.ts';
export { createKernelHarness, HARNESS_KERNELS } from './harness.ts';
export type { KernelHarness, MatmulArgs, AdamWArgs } from './harness-types.ts';
export { KernelRuntime } from './kernel.ts';
export type { KernelSpec } from './kernels/wgsl-util.ts';
export { matmulSpec, type MatmulShape } from './kernels/matmul.ts';
export type { AttentionChoice } from './step.ts';
export { createWebGpuStageBackend } from './stage-backend.ts';
export type { WebGpuStageBackend } from './backend-types.ts';
