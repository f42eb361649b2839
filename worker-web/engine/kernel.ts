// Kernel specs and the runtime that turns them into cached, labelled pipelines.
//
// A KernelSpec is declarative: a label, generated WGSL (shapes baked in as constants, so every
// loop bound and bounds check is known to the compiler), the binding list, and the grid. The
// pipeline cache is keyed by the WGSL text, so the same shape compiles once per device.

import { isSoftwareInfo } from './device.ts';
import { matmulSpec, pickSplitK, pickTile, type MatmulShape } from './kernels/matmul.ts';

export type BindingKind = 'read' | 'rw' | 'uniform';

export interface KernelSpec {
  /** Pipeline label, e.g. "matmul_NT_64x48x32": shows up in WebGPU validation/loss reports. */
  label: string;
  code: string;
  bindings: BindingKind[];
  /** Workgroups to dispatch. */
  grid: [number, number, number];
}

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

/** Split a 1-D workgroup count over x/y so it fits maxComputeWorkgroupsPerDimension. */
export function grid1d(groups: number, maxPerDim = 65535): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL for the flat workgroup index of a grid1d dispatch. */
export const FLAT_WG = 'let wg_flat = wid.y * nwg.x + wid.x;';

export class KernelRuntime {
  private pipelines = new Map<string, GPUComputePipeline>();
  /** Label of the last kernel encoded, for error reports. */
  lastLabel = '';
  dispatchCount = 0;

  /**
   * Software adapters (SwiftShader) run workgroups on CPU threads: fewer, bigger tiles win there
   * (128x128 measured 2x faster than 64x64 at 256^3). GPUs get 128x128 only with >= 96 tiles.
   */
  readonly software: boolean;

  constructor(readonly device: GPUDevice, opts: { software?: boolean } = {}) {
    this.software = opts.software ?? isSoftwareInfo((device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo);
  }

  /** Split-K slices for a long-K product with a small output on this device (1 = none). */
  splitK(M: number, N: number, K: number): number {
    return pickSplitK(M, N, K, this.tile(M, N), this.software);
  }

  /** Column sums over N rows in two passes (row blocks, then blocks) on GPUs when N is long. */
  twoPassColumns(N: number): boolean {
    return !this.software && N >= 1024;
  }

  /** matmulSpec with this device's tile choice (callers may still force `tile`). */
  matmul(s: MatmulShape): KernelSpec {
    return matmulSpec({ tile: this.tile(s.M, s.N), ...s });
  }

  /** Matmul tile config for an MxN output on this device. */
  tile(M: number, N: number): 64 | 128 {
    if (this.software) return M >= 128 && N >= 128 ? 128 : 64;
    return pickTile(M, N);
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

/** WGSL binding declarations for a spec's binding list, named in order. */
export function bindingDecls(names: string[], kinds: BindingKind[], types: string[]): string {
  return names
    .map((n, i) => {
      const k = kinds[i];
      const space = k === 'uniform' ? 'uniform' : k === 'rw' ? 'storage, read_write' : 'storage, read';
      return `@group(0) @binding(${i}) var<${space}> ${n}: ${types[i]};`;
    })
    .join('\n');
}

export function f32(x: number): string {
  // A WGSL f32 literal that round-trips.
  const s = Math.fround(x).toString();
  return /[.eE]/.test(s) ? s : s + '.0';
}
