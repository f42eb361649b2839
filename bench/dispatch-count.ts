// Counts compute dispatches per step for every peer, ours included, by wrapping
// GPUComputePassEncoder.prototype.dispatchWorkgroups(+Indirect) once. Peers run one at a time
// (each step awaits its read-back), so the count between a step's start and end is that step's.

let installed = false;
let count = 0;

export function installDispatchCounter(): void {
  if (installed) return;
  const ctor = (globalThis as unknown as { GPUComputePassEncoder?: { prototype: Record<string, unknown> } }).GPUComputePassEncoder;
  if (!ctor) throw new Error('dispatch counter: GPUComputePassEncoder is not a global (install the WebGPU globals first)');
  const p = ctor.prototype;
  for (const m of ['dispatchWorkgroups', 'dispatchWorkgroupsIndirect']) {
    const orig = p[m] as (...a: unknown[]) => unknown;
    p[m] = function (this: unknown, ...a: unknown[]) {
      count++;
      return orig.apply(this, a);
    };
  }
  installed = true;
}

/** Dispatches encoded so far in this process (differences of two readings count a span). */
export function dispatchCount(): number {
  return count;
}

/** Runs fn and returns how many compute dispatches were encoded while it ran. */
export async function countDispatches(fn: () => Promise<void>): Promise<number> {
  const before = count;
  await fn();
  return count - before;
}
