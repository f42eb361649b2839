// Number formatting for the dashboard. Byte counts come with their unit spelled out: GiB (2^30)
// for budgets because browsers and GPUs report powers of two, GB (10^9) beside the 20 B/param
// rule because "4 GB per 1B params" is decimal.

const BIN = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;
const DEC = ['B', 'kB', 'MB', 'GB', 'TB'] as const;

function scaled(n: number, base: number, units: readonly string[]): string {
  if (!Number.isFinite(n)) return '—';
  const neg = n < 0;
  let v = Math.abs(n);
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  const digits = i === 0 ? 0 : v >= 10 ? 1 : 2;
  return `${neg ? '-' : ''}${v.toFixed(digits)} ${units[i]}`;
}

export const formatBytes = (n: number): string => scaled(n, 1024, BIN);
export const formatBytesDecimal = (n: number): string => scaled(n, 1000, DEC);

/** 124439808 -> "124.4M"; small counts are printed whole. */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

/** 1234567 -> "1,234,567" (grouping stays the same whatever the browser locale, for tests). */
export function formatInt(n: number): string {
  if (!Number.isFinite(n)) return '—';
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export function formatLoss(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(4);
}

export function formatRate(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return n >= 100 ? formatInt(n) : n.toFixed(1);
}

/** Seconds since `ms` (epoch ms) as "3s ago", "2m ago", "1h ago". */
export function formatAgo(ms: number | null | undefined, now = Date.now()): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

export function formatLr(n: number | null | undefined): string {
  return n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toExponential(2);
}
