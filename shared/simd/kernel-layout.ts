// Where things lie in a gradient-kernels memory (gradient-kernels.ts): the float64 accumulator
// from byte 0, then the scratch (the fold's chunks, AdamW's mask bytes, scan32's hash states), then
// optional staging slots of one gradient each (fold threads), and the offsets chosen within them
// so that copies run at memcpy speed (4K aliasing, V8's copies into shared memory).

import { MAX_PAGES } from './gradient-kernels.wat.ts';

/** Floats per chunk copied into the kernels' memory: 32 KiB, stays in L1/L2 (8192 measured best). */
export const CHUNK = 8192;

/** Results one fold kernel call takes (fold1..fold4). */
export const KERNEL_FOLD_MAX = 4;

const PAGE = 65536;

/** Bytes of scan32's hash states and keys (after the scratch). */
const HASH_BYTES = 64;

/**
 * Bytes between the starts of the fold's chunks in the scratch: a chunk of floats plus 64, so that
 * each chunk can start at its source's offset modulo 64 (phaseOf).
 */
export const FOLD_STRIDE = CHUNK * 4 + 64;

/** Bytes of the scratch: KERNEL_FOLD_MAX fold chunks, a chunk of mask bytes (adamw), scan32's hash. */
const SCRATCH_BYTES = KERNEL_FOLD_MAX * FOLD_STRIDE + CHUNK + HASH_BYTES;

/**
 * Where a copy of `a` goes relative to a 64-byte aligned start: `a`'s own offset modulo 64. A copy
 * into a SHARED memory (the fold threads') is V8's relaxed memcpy, which moves 8-byte words only
 * when source and destination agree modulo 8 and single bytes otherwise: a gradient at byte 100 of
 * its frame (the msgpack header's length decides) copied to an 8-aligned place took 315 ms per
 * 500 MB against 68 (2026-12-03). Same phase, same cache-line splits as the source.
 */
export function phaseOf(a: Float32Array): number {
  return a.byteOffset & 63;
}

/**
 * Where the scratch starts: 2,112 bytes past the first 4 KiB boundary after the accumulator. A
 * scratch ON a boundary made every copy out of it into a page-aligned array (V8's large backing
 * stores are) ~5x slower: 4K aliasing, each load looks like it depends on a store 4,096 bytes
 * back (500 MB out in 208-259 ms against 40-53 at any other offset, 2026-12-03). It slowed the
 * mean's scaleInto and made the AdamW kernel slower than its JavaScript loop.
 */
export const SCRATCH_SKEW = 2112;

export function scratchOffset(accFloats: number): number {
  return Math.ceil((accFloats * 8) / 4096) * 4096 + SCRATCH_SKEW;
}

/** Where the staging slots start (after the scratch, on a 4 KiB boundary). */
export function slotsOffset(accFloats: number): number {
  return Math.ceil((scratchOffset(accFloats) + SCRATCH_BYTES) / 4096) * 4096;
}

/**
 * Bytes of one staging slot: a gradient of `accFloats` float32 plus 4 KiB, so that the copy can
 * sit at any offset within a page (stagingOffset picks one away from the source's: 4K aliasing).
 */
export function slotBytes(accFloats: number): number {
  return Math.ceil((accFloats * 4) / 4096) * 4096 + 4096;
}

/**
 * Pages a memory needs for an accumulator of `accFloats` float64, the scratch and `slots` staging
 * slots of a gradient each (fold threads: coordinator/train/fold-threads.ts).
 */
export function kernelPages(accFloats: number, slots = 0): number {
  return Math.ceil((slotsOffset(accFloats) + slots * slotBytes(accFloats)) / PAGE);
}

/** The most staging slots of `accFloats` floats that fit one wasm32 memory beside the accumulator. */
export function slotsThatFit(accFloats: number): number {
  return Math.max(0, Math.floor((MAX_PAGES * PAGE - slotsOffset(accFloats)) / slotBytes(accFloats)));
}
