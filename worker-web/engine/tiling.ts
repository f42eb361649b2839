// Tiling policy: which matmul tile, how many split-K slices and whether column sums take two passes,
// by output shape and device class. A leaf module (no imports): the matmul generator uses it for
// its default tile and KernelRuntime for its per-device choices, without either importing the other.
//
// Software adapters (SwiftShader) run workgroups on CPU threads: fewer, bigger tiles win there
// (128x128 measured 2x faster than 64x64 at 256^3), and 2 CPU cores gain nothing from split-K or
// two-pass column sums. GPUs get 128x128 only with enough tiles to keep them busy.

export type TileSize = 64 | 128;

/** 128x128 tiles only when there are enough of them to keep a big GPU busy. */
export function pickTile(M: number, N: number): TileSize {
  return Math.ceil(M / 128) * Math.ceil(N / 128) >= 96 ? 128 : 64;
}

/** Matmul tile for an MxN output on a device of this class. */
export function deviceTile(M: number, N: number, software: boolean): TileSize {
  if (software) return M >= 128 && N >= 128 ? 128 : 64;
  return pickTile(M, N);
}

/**
 * How many K slices to use: only when the output has too few tiles to fill a GPU and K is long.
 * Software adapters have a couple of CPU cores: never split there.
 */
export function pickSplitK(M: number, N: number, K: number, tile: TileSize, software: boolean): number {
  if (software) return 1;
  const tiles = Math.ceil(M / tile) * Math.ceil(N / tile);
  const target = 128; // workgroups in flight we want (about one per SM on large GPUs)
  if (tiles >= target / 2 || K < 1024) return 1;
  return Math.max(1, Math.min(Math.ceil(target / tiles), Math.floor(K / 256), 32));
}

/** Column sums over N rows in two passes (row blocks, then blocks) on GPUs when N is long. */
export function twoPassColumns(N: number, software: boolean): boolean {
  return !software && N >= 1024;
}
