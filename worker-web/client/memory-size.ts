// Human memory sizes for the --memory flag and the tab's cap input: "2GiB", "512 MiB", "1.5GB",
// "3000000000". Binary suffixes (KiB/MiB/GiB/TiB) are powers of 1024, decimal ones (KB/MB/GB/TB)
// powers of 1000, as the field notes' 20 B/param rule quotes decimal GB. A bare "G"/"M" is
// ambiguous, so it is refused with a hint rather than guessed.

import { AppError } from '../../shared/errors.ts';

const UNITS: Record<string, number> = {
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
};

/** Bytes in `text`; throws AppError ERR_WORKER_MEMORY_SIZE naming the input and the accepted forms. */
export function parseMemorySize(text: string, where = 'memory size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const hint = 'use a number with a unit, e.g. 2GiB, 512MiB, 1.5GB, or plain bytes';
  if (!m) throw new AppError('ERR_WORKER_MEMORY_SIZE', `${where}: cannot read "${text}"`, 400, hint);
  const unit = m[2].toLowerCase() || 'b';
  const mult = UNITS[unit];
  if (mult === undefined) {
    throw new AppError('ERR_WORKER_MEMORY_SIZE', `${where}: unknown unit "${m[2]}" in "${text}"`, 400, hint);
  }
  const bytes = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new AppError('ERR_WORKER_MEMORY_SIZE', `${where}: "${text}" is not a positive size`, 400, hint);
  }
  return bytes;
}

/** "1.50 GiB" style, for logs and the tab. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(2)} ${units[i]}`;
}
