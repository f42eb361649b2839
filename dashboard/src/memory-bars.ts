// Stacked memory bars: one per worker (dashboard) or device (simulator). Each bar shows the four
// parts of the 20 bytes/param rule against the device's budget, with the numbers as text beside
// it so the arithmetic is readable without hovering. Widths are set through the CSSOM
// (element.style), which a strict CSP allows; no inline style attributes are written.

import { el, clear, type Child } from './dom.ts';
import { formatBytes } from './format.ts';

export const PARTS = ['weights', 'gradients', 'optimizer', 'activations'] as const;
export type Part = (typeof PARTS)[number];
export type Breakdown = Record<Part, number>;

export interface MemoryBar {
  key: string;
  label: string;
  budgetBytes: number;
  breakdown: Breakdown;
  /** e.g. "replica", "stage 0-3", "waiting: too small (needs 1.2 GiB)". */
  note?: string;
}

export interface BarLayout {
  /** Percent of the bar's width per part, in PARTS order. */
  widths: Record<Part, number>;
  usedBytes: number;
  /** used / budget, 0 when the budget is unknown. */
  fill: number;
  over: boolean;
}

export function sumBreakdown(b: Breakdown): number {
  return PARTS.reduce((s, p) => s + Math.max(0, b[p] || 0), 0);
}

/**
 * Widths are relative to the larger of budget and use, so a plan that overflows its budget
 * still fits the track and is flagged `over` instead of spilling out.
 */
export function layoutBar(budgetBytes: number, breakdown: Breakdown): BarLayout {
  const used = sumBreakdown(breakdown);
  const scale = Math.max(budgetBytes > 0 ? budgetBytes : 0, used);
  const widths = {} as Record<Part, number>;
  for (const p of PARTS) widths[p] = scale > 0 ? (100 * Math.max(0, breakdown[p] || 0)) / scale : 0;
  return {
    widths,
    usedBytes: used,
    fill: budgetBytes > 0 ? used / budgetBytes : 0,
    over: budgetBytes > 0 && used > budgetBytes,
  };
}

export function totals(bars: MemoryBar[]): { budgetBytes: number; breakdown: Breakdown; usedBytes: number } {
  const breakdown: Breakdown = { weights: 0, gradients: 0, optimizer: 0, activations: 0 };
  let budgetBytes = 0;
  for (const b of bars) {
    budgetBytes += Math.max(0, b.budgetBytes || 0);
    for (const p of PARTS) breakdown[p] += Math.max(0, b.breakdown[p] || 0);
  }
  return { budgetBytes, breakdown, usedBytes: sumBreakdown(breakdown) };
}

/** "0.47%" for small shares (a tiny model on a big GPU), "83%" otherwise. */
export function pct(share: number): string {
  const p = share * 100;
  return p > 0 && p < 10 ? `${p.toFixed(2)}%` : `${p.toFixed(0)}%`;
}

function barRow(bar: MemoryBar, testid: string): HTMLElement {
  const lay = layoutBar(bar.budgetBytes, bar.breakdown);
  const track = el('div', { className: `mem-track${lay.over ? ' over' : ''}` });
  for (const p of PARTS) {
    const seg = el('div', { className: `mem-seg seg-${p}`, title: `${p}: ${formatBytes(bar.breakdown[p])}` });
    seg.style.width = `${lay.widths[p].toFixed(3)}%`;
    track.appendChild(seg);
  }
  const figures: Child[] = PARTS.map((p) => el('span', { className: `fig fig-${p}` }, `${p} ${formatBytes(bar.breakdown[p])}`));
  return el(
    'div',
    { className: 'mem-row', testid, attrs: { 'data-key': bar.key } },
    el('div', { className: 'mem-label' }, el('span', { className: 'mem-name' }, bar.label), bar.note ? el('span', { className: 'mem-note' }, bar.note) : null),
    track,
    el(
      'div',
      { className: 'mem-figs' },
      ...figures,
      el('span', { className: `fig fig-total${lay.over ? ' over' : ''}` }, `= ${formatBytes(lay.usedBytes)} of ${bar.budgetBytes > 0 ? formatBytes(bar.budgetBytes) : '?'} (${pct(lay.fill)})`),
    ),
  );
}

/** Redraw the bars and a totals row into `container`. */
export function renderMemoryBars(container: HTMLElement, bars: MemoryBar[], emptyText: string): void {
  clear(container);
  if (bars.length === 0) {
    container.appendChild(el('p', { className: 'empty' }, emptyText));
    return;
  }
  for (const b of bars) container.appendChild(barRow(b, 'mem-bar'));
  const t = totals(bars);
  container.appendChild(barRow({ key: '__total', label: `Total (${bars.length})`, budgetBytes: t.budgetBytes, breakdown: t.breakdown }, 'mem-total'));
}

/** The colour key, drawn once per page. */
export function legend(): HTMLElement {
  return el('div', { className: 'mem-legend' }, ...PARTS.map((p) => el('span', { className: `key seg-${p}` }, p)));
}
