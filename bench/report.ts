// Plain-text table for humans, then ONE JSON line for machines (the last line of the output).

export function table(headers: string[], rows: string[][]): string {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(headers), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

export function fmt(x: number | null | undefined, digits = 2): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '-';
  return x >= 100 ? x.toFixed(0) : x.toFixed(digits);
}

/** ours/peer as a speed ratio (>1: we are faster); null when either side is missing. */
export function ratio(ours: number | null, peer: number | null): number | null {
  return ours && peer ? ours / peer : null;
}

export function round(x: number | null, digits = 3): number | null {
  return x === null || !Number.isFinite(x) ? null : Number(x.toFixed(digits));
}
