// EngineHost on WebGPU, for both environments: the caller passes how to get a GPU object
// (navigator.gpu in the tab's Web Worker, nodeGpu() in Node) and how to build the engine's
// TrainingBackend on a device. Owns the device: requests it with the adapter's own limits, probes
// memory under an OOM error scope, watches `device.lost`, and requests a fresh device after a loss.
// The budget the coordinator plans with is min(user cap, probe, adapter limits) (shared/memory/plan.ts):
// on a hardware adapter the probe runs up to the user's cap, or until the first allocation fails,
// with no ceiling of its own (a 24 GB GPU is a 24 GB budget); PROBE_GUARD_HW only stops a driver that
// never fails an allocation (one that commits memory lazily) from probing forever: set a cap there.
// A software adapter allocates host RAM, so it is probed to at most PROBE_CEILING_SW.

import type { StageBackend, TrainingBackend } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import type { StageSpec } from '../../shared/model/stage.ts';
import { requestEngineDevice, type EngineDevice } from '../engine/device.ts';
import { probeMemory } from '../engine/memory.ts';
import type { CreateOptions, DeviceDescription, EngineHost } from './engine-host.ts';

export interface WebGpuHostOptions {
  /** Never probe past this (the volunteer's cap). */
  probeCeilingBytes?: number;
  /** Builds the engine's backend on a device (engine-factory.ts: createWebGpuBackend). */
  createBackend: (dev: EngineDevice, model: ModelConfig, memoryCapBytes?: number) => Promise<TrainingBackend> | TrainingBackend;
  /**
   * Builds a pipeline stage's backend on a device (engine-factory.ts). Without it a stage runs on
   * the CPU reference stage backend (same maths, slower).
   */
  createStageBackend?: (dev: EngineDevice, model: ModelConfig, spec: StageSpec, memoryCapBytes?: number) => Promise<StageBackend> | StageBackend;
}

/** Software adapters allocate host RAM: probe them only this far. */
export const PROBE_CEILING_SW = 512 * 1024 ** 2;
/** Runaway guard for hardware adapters (above any single GPU's memory today), not a budget ceiling. */
export const PROBE_GUARD_HW = 1024 * 1024 ** 3;
/** Hardware probes allocate this much at a time (bounded by maxBufferSize), so tens of GB take ~100 steps. */
export const PROBE_CHUNK_HW = 256 * 1024 ** 2;

/** How far to probe: the user's cap when set; a software adapter at most PROBE_CEILING_SW; hardware until it fails. */
export function probeCeiling(isSoftware: boolean, userCapBytes?: number): number {
  if (isSoftware) return Math.min(userCapBytes ?? PROBE_CEILING_SW, PROBE_CEILING_SW);
  return userCapBytes ?? PROBE_GUARD_HW;
}

export interface WebGpuHost extends EngineHost {
  /** The device in use (for diagnostics, and tests that destroy it to simulate a loss). */
  currentDevice(): EngineDevice | undefined;
}

/**
 * Reports a loss of `d` through `onLost` unless `backend` was disposed first: a loss after our own
 * dispose() is expected; any other (driver reset, OOM, someone destroying the device) is reported
 * so the loop rebuilds.
 */
function reportLoss<B extends { dispose(): void }>(d: EngineDevice, backend: B, onLost: (reason: string) => void): B {
  let disposed = false;
  const dispose = backend.dispose.bind(backend);
  backend.dispose = () => {
    disposed = true;
    dispose();
  };
  void d.device.lost.then((info) => {
    if (!disposed) onLost(`${info.reason ?? 'unknown'}: ${info.message || 'no message'}`);
  });
  return backend;
}

export function createWebGpuHost(getGpu: () => GPU | undefined, opts: WebGpuHostOptions): WebGpuHost {
  let dev: EngineDevice | undefined;
  let lost = false;
  // The probe allocates up to the ceiling: do it once per device, not on every describe().
  let described: { dev: EngineDevice; d: DeviceDescription } | undefined;

  async function device(): Promise<EngineDevice> {
    if (dev && !lost) return dev;
    const gpu = getGpu();
    if (!gpu) throw new Error('webgpu: this environment has no WebGPU (navigator.gpu is undefined)');
    dev = await requestEngineDevice(gpu);
    lost = false;
    const mine = dev;
    void mine.device.lost.then(() => {
      if (dev === mine) lost = true;
    });
    return mine;
  }

  return {
    backend: 'webgpu',
    fixedShape: true,
    currentDevice: () => dev,
    async describe(): Promise<DeviceDescription> {
      const d = await device();
      if (described?.dev === d) return described.d;
      const ceiling = probeCeiling(d.info.isSoftware, opts.probeCeilingBytes);
      const probe = await probeMemory(d.device, ceiling, d.info.isSoftware ? {} : { chunkBytes: PROBE_CHUNK_HW });
      const desc: DeviceDescription = {
        adapter: {
          vendor: d.info.vendor,
          architecture: d.info.architecture,
          description: d.info.description || d.info.device || `${d.info.vendor} ${d.info.architecture}`.trim(),
          isSoftware: d.info.isSoftware,
        },
        limits: {
          maxBufferSize: d.device.limits.maxBufferSize,
          maxStorageBufferBindingSize: d.device.limits.maxStorageBufferBindingSize,
        },
        probedBytes: probe.usableBytes,
      };
      described = { dev: d, d: desc };
      return desc;
    },
    async create(model: ModelConfig, onLost: (reason: string) => void, o: CreateOptions = {}): Promise<TrainingBackend> {
      const d = await device();
      return reportLoss(d, await opts.createBackend(d, model, o.memoryCapBytes), onLost);
    },
    async createStage(model: ModelConfig, spec: StageSpec, onLost: (reason: string) => void, o: CreateOptions = {}): Promise<StageBackend> {
      if (!opts.createStageBackend) return createCpuStageBackend(model, spec);
      const d = await device();
      return reportLoss(d, await opts.createStageBackend(d, model, spec, o.memoryCapBytes), onLost);
    },
  };
}
