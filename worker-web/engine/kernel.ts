// The runtime that turns kernel specs into cached, labelled pipelines and dispatches.
//
// A KernelSpec (declared in the leaf kernels/wgsl-util.ts) is declarative: a label, generated WGSL
// (shapes baked in as constants, so every loop bound and bounds check is known to the compiler),
// the binding list, and the grid. The pipeline cache is keyed by the WGSL text, so the same shape
// compiles once per device. Tile and split-K choices come from tiling.ts.

import { isSoftwareInfo } from './device.ts';
import { matmulSpec, type MatmulShape } from './kernels/matmul.ts';
import type { KernelSpec } from './kernels/wgsl-util.ts';
import { deviceTile, pickSplitK, twoPassColumns } from './tiling.ts';

export interface BufferSlice {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

export interface Dispatch {
  spec: KernelSpec;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
}

/** Compiled pipelines per device, shared by every runtime on it (e.g. the engines of several pipeline stages). */
const deviceCache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

export class KernelRuntime {
  private readonly pipelines: Map<string, GPUComputePipeline>;
  /** Label of the last kernel encoded, for error reports. */
  lastLabel = '';
  dispatchCount = 0;

  /** Software adapter (SwiftShader & co): selects tiling.ts's CPU-thread policy. */
  readonly software: boolean;

  constructor(readonly device: GPUDevice, opts: { software?: boolean } = {}) {
    this.software = opts.software ?? isSoftwareInfo((device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo);
    let cache = deviceCache.get(device);
    if (!cache) deviceCache.set(device, (cache = new Map()));
    this.pipelines = cache;
  }

  /** Split-K slices for a long-K product with a small output on this device (1 = none). */
  splitK(M: number, N: number, K: number): number {
    return pickSplitK(M, N, K, this.tile(M, N), this.software);
  }

  /** Column sums over N rows in two passes (row blocks, then blocks) on GPUs when N is long. */
  twoPassColumns(N: number): boolean {
    return twoPassColumns(N, this.software);
  }

  /** matmulSpec with this device's tile choice (callers may still force `tile`). */
  matmul(s: MatmulShape): KernelSpec {
    return matmulSpec({ tile: this.tile(s.M, s.N), ...s });
  }

  /** Matmul tile config for an MxN output on this device. */
  tile(M: number, N: number): 64 | 128 {
    return deviceTile(M, N, this.software);
  }

  pipeline(spec: KernelSpec): GPUComputePipeline {
    let p = this.pipelines.get(spec.code);
    if (!p) {
      const module = this.device.createShaderModule({ code: spec.code, label: spec.label });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: spec.label });
      this.pipelines.set(spec.code, p);
    }
    return p;
  }

  /**
   * Compile with createComputePipelineAsync in warm(): set by engines that compile while their
   * worker must stay responsive (a pipeline stage compiles on its `stage` message, connected).
   * Synchronous creation blocks the thread for each pipeline (Dawn in Node on a loaded
   * SwiftShader: 1-10 s each, a stage has dozens, so heartbeats stopped for longer than
   * --dead-after-ms); the async creation left event-loop gaps of at most ~0.3-0.5 s (measured on
   * this machine: 6 pipelines sync 8.8 s with a 1.7 s gap, async all at once 10.5 s, 0.3 s gap).
   */
  compileAsync = false;

  /**
   * Compile every not-yet-cached pipeline of a plan up front. Synchronous creation by default:
   * measured on Dawn/SwiftShader, createComputePipelineAsync was ~1.6x slower per pipeline
   * (3.2 s vs 5.4 s under load) and not parallel (a replica warms up disconnected, so blocking
   * does not matter there); `compileAsync` for engines that must not block.
   */
  async warm(specs: KernelSpec[]): Promise<void> {
    if (!this.compileAsync) {
      for (const s of specs) this.pipeline(s);
      return;
    }
    const todo = new Map<string, KernelSpec>();
    for (const s of specs) if (!this.pipelines.has(s.code)) todo.set(s.code, s);
    const made = await Promise.all([...todo.values()].map(async (spec) => {
      const module = this.device.createShaderModule({ code: spec.code, label: spec.label });
      return [spec.code, await this.device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: spec.label })] as const;
    }));
    for (const [code, p] of made) if (!this.pipelines.has(code)) this.pipelines.set(code, p);
  }

  /** Build a dispatch (pipeline + bind group) once; encode it any number of times. */
  prepare(spec: KernelSpec, buffers: Array<GPUBuffer | BufferSlice>): Dispatch {
    if (buffers.length !== spec.bindings.length) {
      throw new Error(`kernel ${spec.label}: ${buffers.length} buffers given, ${spec.bindings.length} bindings declared (bug)`);
    }
    const pipeline = this.pipeline(spec);
    const entries: GPUBindGroupEntry[] = buffers.map((b, i) => {
      const s: BufferSlice = 'buffer' in b ? b : { buffer: b };
      return { binding: i, resource: { buffer: s.buffer, offset: s.offset ?? 0, size: s.size } };
    });
    const bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: spec.label });
    return { spec, pipeline, bindGroup };
  }

  encode(pass: GPUComputePassEncoder, d: Dispatch): void {
    pass.setPipeline(d.pipeline);
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.spec.grid[0], d.spec.grid[1], d.spec.grid[2]);
    this.lastLabel = d.spec.label;
    this.dispatchCount++;
  }
}
