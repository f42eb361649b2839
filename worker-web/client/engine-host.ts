// What the worker loop needs from its environment to compute: a description of the device for
// `hello`, and a way to (re)build a TrainingBackend for the model the coordinator names. The Node
// worker and the tab's Web Worker each provide one (CPU reference or WebGPU on navigator.gpu /
// Dawn), so the loop itself stays environment-neutral.

import type { BackendName, StageBackend, TrainingBackend } from '../../shared/backend.ts';
import type { StageSpec } from '../../shared/model/stage.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { AdapterInfo, DeviceLimits } from '../../shared/protocol/messages.ts';

export interface DeviceDescription {
  adapter: AdapterInfo;
  limits: DeviceLimits;
  /** Bytes this device was found to hold (OOM probe for WebGPU, free RAM for cpu); undefined if unknown. */
  probedBytes?: number;
}

export interface EngineHost {
  readonly backend: BackendName;
  /**
   * True if the engine compiles kernels per (B, T) (WebGPU): the loop then pads every micro-batch
   * to the plan's size and compiles before taking work.
   */
  readonly fixedShape?: boolean;
  /** Finds the device and measures it; called before the first hello and after a device loss. */
  describe(): Promise<DeviceDescription>;
  /**
   * Builds a backend for `model`. `onLost` fires at most once if the device is lost afterwards
   * (WebGPU `device.lost`); the loop then disposes the backend and calls create() again.
   */
  create(model: ModelConfig, onLost: (reason: string) => void, opts?: CreateOptions): Promise<TrainingBackend>;
  /**
   * Builds a pipeline stage's backend (blocks spec.from..spec.to, docs/pipeline.md); a host
   * without one cannot take the stage role. `onLost` as for create().
   */
  createStage?(model: ModelConfig, spec: StageSpec, onLost: (reason: string) => void, opts?: CreateOptions): Promise<StageBackend>;
}

export interface CreateOptions {
  /** The volunteer's cap: the engine refuses plans whose buffers exceed it. */
  memoryCapBytes?: number;
}
