// The `webgpu` TrainingBackend's public types, apart from its implementation (backend.ts) so the
// contract reads on one page and the implementation file stays one job.

import type { MicroBatch, StageBackend, TrainingBackend } from '../../shared/backend.ts';
import type { AdapterInfo } from './device.ts';
import type { EnginePlan } from './plan.ts';
import type { AttentionChoice } from './step.ts';
import type { KernelHarness } from './harness-types.ts';

/** Hyper-parameters of one on-device AdamW update; `decay(name)` says which tensors get weight decay. */
export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decay: (name: string) => boolean;
  gradScale?: number;
}

export interface WebGpuBackendOptions {
  /** Use this device (the caller owns it). Otherwise one is requested from `gpu` (or navigator.gpu) and owned. */
  device?: GPUDevice;
  gpu?: GPU;
  /** Refuse plans whose GPU buffers exceed this many bytes (the volunteer's cap; always wins). */
  memoryCapBytes?: number;
  /** Largest micro-batch this backend will accept; its plan is built (and checked) up front. */
  maxMicroBatch?: { B: number; T: number };
  /** Attention kernels: 'auto' (default) = batched matmuls for T >= 64, row kernels below. */
  attention?: AttentionChoice;
  /**
   * Kernel-choice policy (tile sizes, split-K): 'software' for CPU adapters (SwiftShader), 'gpu'
   * otherwise. Default: detected from the adapter. Override to test the other policy's kernels.
   */
  deviceClass?: 'gpu' | 'software';
  /** Adapter info for reports, if the caller already has it. */
  adapterInfo?: AdapterInfo;
}

export interface DeviceLossReport {
  reason: string;
  message: string;
  /** Label of the last kernel encoded before the loss. */
  lastKernel: string;
}

export interface WebGpuBackend extends TrainingBackend {
  readonly name: 'webgpu';
  readonly device: GPUDevice;
  readonly adapterInfo?: AdapterInfo;
  /** Kernel dispatches in one forwardBackward of the current plan (0 before the first step). */
  readonly dispatchesPerStep: number;
  /** The memory plan of the current (B,T), if one is built. */
  readonly plan: EnginePlan | undefined;
  /** Called once if the device is lost (driver reset, OOM, destroy); rebuild with createWebGpuBackend. */
  onLost(cb: (r: DeviceLossReport) => void): void;
  /** Uncaptured WebGPU errors (validation, OOM), each with the last kernel label. */
  onError(cb: (message: string) => void): void;
  readonly lost: boolean;
  /** Run single kernels on this device (conformance tests). */
  harness(): KernelHarness;
  /**
   * One AdamW update on the device copy of the parameters, using the gradient of the last
   * forwardBackward (local-step training), times gradScale (clipping: min(1, maxNorm / gradNorm)).
   * Moments live on the GPU. Returns nothing; read the
   * parameters back with getParams().
   */
  adamwStep(h: AdamWHyper): Promise<void>;
  /** Fresh AdamW moments: the next adamwStep starts from m = v = 0 and t = 1 (DiLoCo: a new or returning worker). */
  resetMoments(): void;
  getParams(): Promise<Float32Array>;
  /**
   * GPU time of every kernel of one forwardBackward, from timestamp queries (one compute pass per
   * dispatch, so slightly slower than a real step). Needs the 'timestamp-query' feature
   * (requestEngineDevice asks for it); Chrome quantises to 100 us without developer flags.
   */
  profileStep(batch: MicroBatch): Promise<Array<{ label: string; ms: number }>>;
}

/** A pipeline stage on the WebGPU engine (createWebGpuStageBackend): the StageBackend plus the engine's reports. */
export interface WebGpuStageBackend extends StageBackend {
  readonly name: 'webgpu';
  readonly device: GPUDevice;
  readonly adapterInfo?: AdapterInfo;
  readonly dispatchesPerStep: number;
  readonly plan: EnginePlan | undefined;
  onLost(cb: (r: DeviceLossReport) => void): void;
  onError(cb: (message: string) => void): void;
  readonly lost: boolean;
}
