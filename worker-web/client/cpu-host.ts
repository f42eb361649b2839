// EngineHost on the CPU reference backend: the Node worker's `--backend cpu` and the tab's opt-in
// CPU mode when the browser has no WebGPU. Environment-neutral: the caller says how much memory it
// found (os.freemem() in Node, navigator.deviceMemory in a browser) and what the CPU is.

import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import type { StageSpec } from '../../shared/model/stage.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { StageBackend, TrainingBackend } from '../../shared/backend.ts';
import type { DeviceDescription, EngineHost } from './engine-host.ts';

export interface CpuHostOptions {
  /** e.g. "x64, 2 cores" or the browser's user agent platform. */
  description: string;
  architecture?: string;
  probedBytes?: number;
}

export function createCpuHost(o: CpuHostOptions): EngineHost {
  return {
    backend: 'cpu',
    async describe(): Promise<DeviceDescription> {
      return {
        adapter: { vendor: 'cpu', architecture: o.architecture ?? '', description: o.description, isSoftware: true },
        limits: {},
        probedBytes: o.probedBytes,
      };
    },
    async create(model: ModelConfig): Promise<TrainingBackend> {
      // The CPU cannot be "lost"; onLost is never called.
      return createCpuBackend(model);
    },
    async createStage(model: ModelConfig, spec: StageSpec): Promise<StageBackend> {
      return createCpuStageBackend(model, spec);
    },
  };
}
