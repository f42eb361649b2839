// Pure helpers for the simulator page, over POST /api/simulate's result (shared/memory/simulate.ts,
// the same JSON as `npm run simulate -- --json`): the verdict line, the arithmetic (the rule's
// parts as params × bytes, the explicit activation estimate, the step-time estimate, per-buffer
// limit advice) and one memory bar per device.

import type { SimulateInput, SimulateResult } from '../../shared/memory/simulate.ts';
import { formatBytes, formatBytesDecimal, formatInt } from './format.ts';
import { PARTS, type Breakdown, type MemoryBar } from './memory-bars.ts';

export type SimulateRequest = Pick<SimulateInput, 'model' | 'params' | 'cluster' | 'mode' | 'precision' | 'batch' | 'seq' | 'churn'>;
export type { SimulateResult };

const both = (n: number): string => `${formatBytesDecimal(n)} (${formatBytes(n)})`;

export function verdict(r: SimulateResult): { text: string; fits: boolean | null } {
  const need = `${r.model}: ${formatInt(r.params)} parameters need ${both(r.totalBytes)} to ${r.mode === 'train' ? 'train' : 'serve'} (${r.precision})`;
  if (!r.cluster) return { text: `${need}.`, fits: null };
  const c = r.cluster;
  return {
    text: `${c.fits ? 'Fits' : 'Does not fit'}. ${need}; the ${c.devices} device(s) (${c.spec}) hold ${both(c.capacityBytes)}. ${c.reason}`,
    fits: c.fits,
  };
}

export function arithmeticLines(r: SimulateResult): string[] {
  const lines: string[] = [];
  const P = r.params;
  for (const p of PARTS) {
    const bytes = r.breakdown[p] ?? 0;
    const perParam = P > 0 ? bytes / P : 0;
    const per = Number.isInteger(perParam) ? String(perParam) : perParam.toFixed(2);
    lines.push(`${p.padEnd(12)} ${formatInt(P)} × ${per} B = ${both(bytes)}`);
  }
  lines.push(`${'total'.padEnd(12)} ${formatInt(P)} × ${r.bytesPerParam} B/param = ${both(r.totalBytes)}`);
  const e = r.estimate;
  if (e?.explicit) {
    lines.push('', `explicit estimate for micro-batch ${e.explicit.batch} × ${e.explicit.seq} tokens: ${both(e.explicit.totalBytes)}`, `  ${e.explicit.formula}`);
    if (e.explicit.comparison) lines.push(`  ${e.explicit.comparison}`);
  }
  for (const f of e?.bufferFlags ?? []) lines.push(`buffer limit: ${f.advice}`);
  for (const n of e?.notes ?? []) lines.push(`note: ${n}`);
  const c = r.cluster;
  if (c) {
    lines.push('', `cluster      ${c.devices} device(s), ${both(c.capacityBytes)} in all; one copy of the model needs ${both(c.neededBytes)}`);
    for (const a of c.step?.arithmetic ?? []) lines.push(`step         ${a}`);
  }
  return lines;
}

/** One bar per device (the first `max`, so a 10,000-device cluster stays drawable). */
export function deviceBars(r: SimulateResult, max = 200): MemoryBar[] {
  const list = r.cluster?.assignments ?? [];
  return list.slice(0, max).map((a) => {
    const b: Breakdown = { weights: 0, gradients: 0, optimizer: 0, activations: 0 };
    for (const p of PARTS) b[p] = a.breakdown?.[p] ?? 0;
    const mb = a.microBatch !== undefined ? `, micro-batch ${a.microBatch}${a.seqLen ? ` × ${a.seqLen}` : ''}` : '';
    return { key: String(a.device), label: `device ${a.device} (${a.spec})`, budgetBytes: a.memoryBytes, breakdown: b, note: `${a.role}${mb}: ${a.reason}` };
  });
}

/** The churn Monte Carlo in words: coverage, throughput, how much moves. Empty without churn. */
export function churnLines(r: SimulateResult): string[] {
  const c = r.churn;
  if (!c) return [];
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const h = (s: number): string => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${(s / 60).toFixed(0)} min`);
  return [
    `${c.devices} device(s), sessions ~${h(c.meanSessionSeconds)} (${c.distribution}), offline ~${h(c.meanOfflineSeconds)}: each online ${pct(c.availability)} of the time, ${c.meanOnline.toFixed(1)} online on average`,
    `model fully covered ${pct(c.coveredShare)} of the time (trials: ${pct(c.coveredShareMin)} – ${pct(c.coveredShareMax)}, ${c.trials} trial(s) over ${h(c.horizonSeconds)})`,
    `expected ${c.expectedTokensPerSec.toFixed(0)} tokens/s (all online: ${c.allOnlineTokensPerSec.toFixed(0)} tokens/s)`,
    `${c.arrivalsAndDeparturesPerHour.toFixed(1)} arrivals + departures per hour move ${c.movedPerHour.text} per hour`,
    c.reason,
  ];
}
