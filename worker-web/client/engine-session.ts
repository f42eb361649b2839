// The engine session: one backend for one model on one device, and everything that happens to it
// (build, warm-up on a throwaway batch, parameter upload, device loss and rebuild), written once.
// It knows nothing of sockets: the connection protocol (worker-client.ts) decides WHEN (on its
// promise chain, in message order) and the session does it. A device loss is reported once per
// built backend through `onLost`; the client leaves and calls rebuildAfterLoss() on its chain.

import type { StageBackend, TrainingBackend } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { StageSpec } from '../../shared/model/stage.ts';
import { now } from './clock.ts';
import { warmupBatch } from './compute-step.ts';
import type { DeviceDescription, EngineHost } from './engine-host.ts';

export interface EngineSessionOptions {
  /** The volunteer's cap, passed to the engine (it refuses plans over it). */
  memoryCapBytes?: number;
  /** The device under the current backend was lost (at most once per built backend). */
  onLost: (reason: string) => void;
}

/** A micro-batch shape to compile before taking work. */
export interface WarmUpShape {
  B: number;
  T: number;
}

export class EngineSession {
  private current?: TrainingBackend;
  private modelKey = '';
  /** A pipeline stage's backend (stage-handler.ts), instead of the whole model's. */
  private stageBackend?: StageBackend;
  private stageKey = '';
  /** Model and micro-batch shape the engine's kernels were compiled for (fixed-shape engines). */
  private warmKey = '';
  private deviceDesc?: DeviceDescription;
  private held?: Float32Array;
  private heldVersion = -1;
  /** Params on the backend are stale (rebuilt engine): re-upload before the next task. */
  private needUpload = false;
  private closed = false;

  constructor(
    private readonly host: EngineHost,
    private readonly opts: EngineSessionOptions,
  ) {}

  /** The backend, if one is built (undefined after a loss until the next build). */
  get backend(): TrainingBackend | undefined {
    return this.current;
  }
  /** The last device description (for hello). */
  get device(): DeviceDescription | undefined {
    return this.deviceDesc;
  }
  /** The parameters held (what the last params/update set), or undefined. Do not modify. */
  get heldParams(): Float32Array | undefined {
    return this.held;
  }
  /** Version of the parameters held (-1: none). */
  get paramsVersion(): number {
    return this.heldVersion;
  }
  /** The engine compiles per (B, T): micro-batches are padded to the plan's size and warmed up. */
  get fixedShape(): boolean {
    return Boolean(this.host.fixedShape);
  }

  /** Finds and measures the device (before the first hello). */
  async describe(): Promise<DeviceDescription> {
    this.deviceDesc = await this.host.describe();
    return this.deviceDesc;
  }

  /** Builds a backend for `model` unless the current one is for it already. */
  async ensure(model: ModelConfig): Promise<void> {
    if (this.current && this.modelKey === modelKey(model)) return;
    await this.rebuild(model);
  }

  /** The stage backend, if one is built. */
  get stage(): StageBackend | undefined {
    return this.stageBackend;
  }

  /**
   * Builds (or keeps) the backend of blocks `spec` of `model`. A stage worker holds no
   * whole-model backend (it would not fit its budget): that one is freed first.
   */
  async ensureStage(model: ModelConfig, spec: StageSpec): Promise<StageBackend> {
    const key = `${modelKey(model)}|${spec.from}-${spec.to}`;
    if (this.stageBackend && this.stageKey === key) return this.stageBackend;
    this.disposeStage();
    this.current?.dispose();
    this.current = undefined;
    this.modelKey = '';
    this.held = undefined;
    this.heldVersion = -1;
    if (!this.host.createStage) throw new Error(`the ${this.host.backend} engine cannot run pipeline stages`);
    let lostOnce = false;
    this.stageBackend = await this.host.createStage(model, spec, (reason) => {
      if (lostOnce || this.closed) return;
      lostOnce = true;
      this.opts.onLost(reason);
    }, { memoryCapBytes: this.opts.memoryCapBytes });
    this.stageKey = key;
    return this.stageBackend;
  }

  private disposeStage(): void {
    try {
      this.stageBackend?.dispose();
    } catch {
      /* already gone (device lost) */
    }
    this.stageBackend = undefined;
    this.stageKey = '';
  }

  /** True if a fixed-shape engine has not compiled this model at this shape yet. */
  needsWarmUp(model: ModelConfig, shape: WarmUpShape): boolean {
    return this.fixedShape && this.warmKey !== warmKey(model, shape);
  }

  /**
   * Builds (or keeps) the backend and runs one throwaway forward+backward of `shape`, so a
   * fixed-shape engine compiles its kernels now rather than while holding a lease. Returns the
   * milliseconds the compile took (after the build).
   */
  async warmUp(model: ModelConfig, paramCount: number, shape: WarmUpShape): Promise<number> {
    if (!this.current || this.modelKey !== modelKey(model)) await this.rebuild(model);
    const backend = this.current!;
    const t0 = now();
    await backend.setParams(this.held ?? new Float32Array(paramCount));
    await backend.forwardBackward(warmupBatch(shape.B, shape.T));
    this.warmKey = warmKey(model, shape);
    this.needUpload = this.held !== undefined;
    return now() - t0;
  }

  /** Uploads a parameter set and holds it (it is re-uploaded after a rebuild). */
  async setParams(params: Float32Array, version: number): Promise<void> {
    await this.current!.setParams(params);
    this.held = params;
    this.heldVersion = version;
    this.needUpload = false;
  }

  /** Re-uploads the held parameters if the backend was rebuilt since they were set. */
  async uploadIfStale(): Promise<void> {
    if (this.needUpload && this.held) {
      await this.current!.setParams(this.held);
      this.needUpload = false;
    }
  }

  /**
   * After a device loss: drops the dead backend (keeping the parameters, re-uploaded before the
   * next task) and acquires and measures a new device. The next ensure()/warmUp() builds on it.
   */
  async rebuildAfterLoss(): Promise<DeviceDescription> {
    try {
      this.current?.dispose();
    } catch {
      /* already gone */
    }
    this.current = undefined;
    this.modelKey = '';
    this.warmKey = '';
    this.needUpload = this.held !== undefined;
    this.disposeStage(); // its parameters come again with the next share (a new connection)
    return this.describe();
  }

  /** From now on a device loss is not reported (the client is stopping). */
  close(): void {
    this.closed = true;
  }

  /** Frees the backend. */
  dispose(): void {
    this.current?.dispose();
    this.current = undefined;
    this.disposeStage();
  }

  private async rebuild(model: ModelConfig): Promise<void> {
    this.disposeStage();
    this.current?.dispose();
    this.current = undefined;
    this.held = undefined;
    this.heldVersion = -1;
    let lostOnce = false;
    this.current = await this.host.create(model, (reason) => {
      if (lostOnce || this.closed) return;
      lostOnce = true;
      this.opts.onLost(reason);
    }, { memoryCapBytes: this.opts.memoryCapBytes });
    this.modelKey = modelKey(model);
  }
}

function modelKey(model: ModelConfig): string {
  return JSON.stringify(model);
}

function warmKey(model: ModelConfig, shape: WarmUpShape): string {
  return `${modelKey(model)}|${shape.B}x${shape.T}`;
}
