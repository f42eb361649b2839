// The kernels' shared vocabulary, in one leaf module (it imports nothing, so every kernel file and
// the runtime can depend on it without a cycle): the declarative KernelSpec, the 1-D grid split,
// WGSL literals and bindings, and deterministic tree reductions over a workgroup (fixed pairing
// order, so the same inputs always sum the same way on every run).

export type BindingKind = 'read' | 'rw' | 'uniform';

export interface KernelSpec {
  /** Pipeline label, e.g. "matmul_NT_64x48x32": shows up in WebGPU validation/loss reports. */
  label: string;
  code: string;
  bindings: BindingKind[];
  /** Workgroups to dispatch. */
  grid: [number, number, number];
}

/** Split a 1-D workgroup count over x/y so it fits maxComputeWorkgroupsPerDimension. */
export function grid1d(groups: number, maxPerDim = 65535): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL for the flat workgroup index of a grid1d dispatch. */
export const FLAT_WG = 'let wg_flat = wid.y * nwg.x + wid.x;';

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

/** Declares `red` and `red_sum/red_max(v, li)` for a 1-D workgroup of `wg` threads (power of 2). */
export function treeReduce(wg: number): string {
  return `var<workgroup> red: array<f32, ${wg}>;
fn red_sum(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = red[li] + red[li + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn red_max(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}

/** Builtins + flat workgroup index for kernels dispatched with grid1d (one workgroup per row). */
export const ROW_MAIN_ARGS =
  '@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32';
export const ROW_INDEX = 'let row = wid.y * nwg.x + wid.x;';
