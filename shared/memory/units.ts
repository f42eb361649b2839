// Byte units. Every result states its unit; we show decimal GB (1e9, what vendors and the
// "4 GB per 1B params" rule use) beside binary GiB (2^30, what WebGPU limits and OSes use).

import { AppError } from '../errors.ts';

export const KB = 1e3;
export const MB = 1e6;
export const GB = 1e9;
export const TB = 1e12;
export const KiB = 2 ** 10;
export const MiB = 2 ** 20;
export const GiB = 2 ** 30;
export const TiB = 2 ** 40;

const UNITS: Record<string, number> = {
  b: 1, kb: KB, mb: MB, gb: GB, tb: TB, kib: KiB, mib: MiB, gib: GiB, tib: TiB,
};

/** A byte count shown in both units, for JSON output the dashboard can print as-is. */
export interface Bytes {
  bytes: number;
  GB: number;
  GiB: number;
  text: string;
}

export function bytes(n: number): Bytes {
  return { bytes: n, GB: round(n / GB, 3), GiB: round(n / GiB, 3), text: formatBytes(n) };
}

/** "154.4 MB (147.3 MiB)": decimal first, binary in brackets, the unit scaled to the size. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  const [d, du] = a >= TB ? [TB, 'TB'] : a >= GB ? [GB, 'GB'] : a >= MB ? [MB, 'MB'] : a >= KB ? [KB, 'kB'] : [1, 'B'];
  const [b, bu] = a >= TiB ? [TiB, 'TiB'] : a >= GiB ? [GiB, 'GiB'] : a >= MiB ? [MiB, 'MiB'] : a >= KiB ? [KiB, 'KiB'] : [1, 'B'];
  if (d === 1) return `${n} B`;
  return `${sig(n / d)} ${du} (${sig(n / b)} ${bu})`;
}

function sig(x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
}

export function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Parses "8GiB", "80GB", "512 MiB", "1.5e9" (bytes) into a byte count. Units are case-insensitive
 * but GB and GiB differ. Throws ERR_MEMORY_BYTES naming `where` on anything else.
 */
export function parseBytes(text: string, where = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) {
    throw new AppError('ERR_MEMORY_BYTES', `${where}: cannot read "${text}" as a size`, 400,
      'write a number with a unit, e.g. 8GiB, 80GB, 512MiB (GB = 1e9 bytes, GiB = 2^30)');
  }
  const unit = m[2].toLowerCase() || 'b';
  const mult = UNITS[unit];
  if (mult === undefined) {
    throw new AppError('ERR_MEMORY_BYTES', `${where}: unknown unit "${m[2]}" in "${text}"`, 400,
      `use one of B, KB, MB, GB, TB, KiB, MiB, GiB, TiB`);
  }
  const n = Number(m[1]) * mult;
  if (!Number.isFinite(n) || n <= 0) {
    throw new AppError('ERR_MEMORY_BYTES', `${where}: size must be positive, got "${text}"`, 400);
  }
  return Math.floor(n);
}
