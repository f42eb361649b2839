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
   * Compile every not-yet-cached pipeline of a plan up front. Synchronous creation on purpose:
   * measured on Dawn/SwiftShader, createComputePipelineAsync was ~1.6x slower per pipeline
   * (3.2 s vs 5.4 s under load) and not parallel. Async so a browser build may switch later.
   */
  async warm(specs: KernelSpec[]): Promise<void> {
    for (const s of specs) this.pipeline(s);
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
