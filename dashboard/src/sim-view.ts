// Pure helpers for the simulator page: the verdict line, the arithmetic (each part of the rule as
// params × bytes = total, in GB and GiB) and the per-device bars from POST /api/simulate's JSON
// (the `npm run simulate -- --json` shape, issue 7).

import { formatBytes, formatBytesDecimal, formatInt } from './format.ts';
import { PARTS, type Breakdown, type MemoryBar } from './memory-bars.ts';

export interface SimulateRequest {
  model?: string;
  params?: number;
  cluster?: string;
  mode: 'train' | 'infer';
  precision: 'fp32' | 'fp16' | 'int8';
  batch?: number;
  seq?: number;
}

export interface SimAssignment {
  device?: number | string;
  id?: string;
  label?: string;
  name?: string;
  memoryBytes?: number;
  capacityBytes?: number;
  role?: string;
  layerRange?: [number, number];
  layers?: [number, number] | string;
  replica?: number;
  stage?: number;
  usedBytes?: number;
  breakdown?: Partial<Breakdown>;
  count?: number;
  reason?: string;
}

export interface SimulateResult {
  params: number;
  mode: string;
  precision: string;
  bytesPerParam: number;
  totalBytes: number;
  breakdown: Breakdown;
  cluster?: {
    devices: number | unknown[];
    capacityBytes: number;
    fits: boolean;
    replicas: number | unknown[];
    stages: number | unknown[];
    unassigned: unknown[] | number;
    assignments: SimAssignment[];
  };
  warnings?: string[];
}

const both = (n: number): string => `${formatBytesDecimal(n)} (${formatBytes(n)})`;
const count = (v: unknown): number => (Array.isArray(v) ? v.length : typeof v === 'number' ? v : 0);

export function verdict(r: SimulateResult): { text: string; fits: boolean | null } {
  const need = `${formatInt(r.params)} parameters need ${both(r.totalBytes)} to ${r.mode === 'train' ? 'train' : 'serve'} (${r.precision})`;
  if (!r.cluster) return { text: `${need}.`, fits: null };
  const c = r.cluster;
  const fits = c.fits === true;
  const shape = `${count(c.replicas)} replica(s), ${count(c.stages)} stage(s), ${count(c.unassigned)} unassigned`;
  return {
    text: `${fits ? 'Fits' : 'Does not fit'}: ${need}; the cluster of ${count(c.devices)} device(s) holds ${both(c.capacityBytes)} — ${shape}.`,
    fits,
  };
}

export function arithmeticLines(r: SimulateResult): string[] {
  const lines: string[] = [];
  const P = r.params;
  for (const p of PARTS) {
    const bytes = r.breakdown?.[p] ?? 0;
    const perParam = P > 0 ? bytes / P : 0;
    const per = Number.isInteger(perParam) ? String(perParam) : perParam.toFixed(2);
    lines.push(`${p.padEnd(12)} ${formatInt(P)} × ${per} B = ${both(bytes)}`);
  }
  lines.push(`${'total'.padEnd(12)} ${formatInt(P)} × ${r.bytesPerParam} B/param = ${both(r.totalBytes)}`);
  if (r.cluster) {
    const c = r.cluster;
    lines.push(`${'cluster'.padEnd(12)} ${count(c.devices)} device(s), ${both(c.capacityBytes)} in all: ${c.capacityBytes >= r.totalBytes ? '≥' : '<'} ${both(r.totalBytes)} needed`);
  }
  return lines;
}

function labelOf(a: SimAssignment, i: number): string {
  const base = a.label ?? a.name ?? a.id ?? (a.device !== undefined ? `device ${a.device}` : `device ${i}`);
  return a.count && a.count > 1 ? `${base} ×${a.count}` : String(base);
}

function noteOf(a: SimAssignment): string | undefined {
  const range = a.layerRange ?? (Array.isArray(a.layers) ? a.layers : undefined);
  const parts = [a.role, range ? `layers ${range[0]}–${range[1] - 1}` : typeof a.layers === 'string' ? `layers ${a.layers}` : '', a.reason ?? ''];
  const s = parts.filter((x) => x).join(': ');
  return s || undefined;
}

/** One bar per assignment; parts missing from an assignment's breakdown count as 0. */
export function deviceBars(r: SimulateResult, max = 200): MemoryBar[] {
  const list = r.cluster?.assignments ?? [];
  return list.slice(0, max).map((a, i) => {
    const b: Breakdown = { weights: 0, gradients: 0, optimizer: 0, activations: 0 };
    if (a.breakdown) for (const p of PARTS) b[p] = a.breakdown[p] ?? 0;
    else if (typeof a.usedBytes === 'number') b.weights = a.usedBytes;
    return { key: String(i), label: labelOf(a, i), budgetBytes: a.capacityBytes ?? a.memoryBytes ?? 0, breakdown: b, note: noteOf(a) };
  });
}
