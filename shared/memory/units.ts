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

const DURATION: Record<string, number> = { s: 1, m: 60, min: 60, h: 3600, d: 86400 };

/** Parses "4h", "30m", "90s", "2d", "1.5h" or a bare number of seconds into seconds. */
export function parseDuration(text: string, where = 'duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const mult = m ? DURATION[m[2].toLowerCase() || 's'] : undefined;
  if (!m || mult === undefined || !(Number(m[1]) > 0)) {
    throw new AppError('ERR_MEMORY_DURATION', `${where}: cannot read "${text}" as a duration`, 400,
      'write a positive number with s, m, h or d, e.g. 4h or 30m');
  }
  return Number(m[1]) * mult;
}

/** Parses a link bandwidth into bits per second: "1Gbps", "100Mbps", "500kbps", "12.5MB/s" (bytes/s x 8). */
export function parseBandwidth(text: string, where = 'link'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(bps|kbps|mbps|gbps|b\/s|kb\/s|mb\/s|gb\/s)\s*$/i.exec(text);
  if (!m || !(Number(m[1]) > 0)) {
    throw new AppError('ERR_MEMORY_BANDWIDTH', `${where}: cannot read "${text}" as a bandwidth`, 400,
      'write bits per second as 100Mbps or 1Gbps, or bytes per second as 12.5MB/s');
  }
  const u = m[2].toLowerCase();
  const bits: Record<string, number> = { bps: 1, kbps: 1e3, mbps: 1e6, gbps: 1e9 };
  const byteUnits: Record<string, number> = { 'b/s': 8, 'kb/s': 8e3, 'mb/s': 8e6, 'gb/s': 8e9 };
  return Number(m[1]) * (bits[u] ?? byteUnits[u]);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return 'never';
  if (seconds < 1) return `${(seconds * 1000).toFixed(0)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}
