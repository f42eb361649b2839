// The one place the worker loop names the WebGPU engine's backend constructor, so the Node host
// and the tab's Web Worker build it the same way: on the host's device (the host owns it and
// watches device.lost), with the volunteer's memory cap enforced by the engine's own plan.

import type { StageBackend, TrainingBackend } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { StageSpec } from '../../shared/model/stage.ts';
import { createWebGpuBackend } from '../engine/backend.ts';
import type { EngineDevice } from '../engine/device.ts';
import { createWebGpuStageBackend } from '../engine/stage-backend.ts';

export async function createEngineBackend(dev: EngineDevice, model: ModelConfig, memoryCapBytes?: number): Promise<TrainingBackend> {
  return createWebGpuBackend(model, { device: dev.device, adapterInfo: dev.info, memoryCapBytes });
}

/** A pipeline stage (blocks [from, to)) on the host's device: only the stage's tensors live on the GPU. */
export async function createEngineStageBackend(dev: EngineDevice, model: ModelConfig, spec: StageSpec, memoryCapBytes?: number): Promise<StageBackend> {
  return createWebGpuStageBackend(model, spec, { device: dev.device, adapterInfo: dev.info, memoryCapBytes });
}
