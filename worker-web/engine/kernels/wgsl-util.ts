// Shared WGSL snippets: deterministic tree reductions over a workgroup (fixed pairing order, so
// the same inputs always sum the same way on every run).

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
