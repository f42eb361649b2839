// The one place the worker loop names the WebGPU engine's backend constructor, so the Node host
// and the tab's Web Worker build it the same way.

import type { TrainingBackend } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { AppError } from '../../shared/errors.ts';
import type { EngineDevice } from '../engine/device.ts';

export async function createEngineBackend(dev: EngineDevice, model: ModelConfig): Promise<TrainingBackend> {
  void dev;
  void model;
  // TODO(engine): replace with worker-web/engine's createWebGpuBackend once it lands.
  throw new AppError('ERR_WORKER_NO_ENGINE', 'webgpu backend: the WebGPU engine is not built yet', 503, 'use --backend cpu');
}
