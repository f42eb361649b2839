// The step history the charts draw: one point per optimizer step, merged by step number so the
// initial GET /api/history and the live pushes can overlap without duplicating points. Eval
// values arrive only on eval steps; missing values are null (uPlot draws gaps / spans them).

export interface ChartPoint {
  step: number;
  loss?: number | null;
  evalLoss?: number | null;
  evalAccuracy?: number | null;
  tokensPerSec?: number | null;
  lr?: number | null;
  epoch?: number | null;
  t?: number | null;
}

export type Series = 'loss' | 'evalLoss' | 'evalAccuracy' | 'tokensPerSec' | 'lr';
export const SERIES: readonly Series[] = ['loss', 'evalLoss', 'evalAccuracy', 'tokensPerSec', 'lr'];

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export class History {
  private readonly byStep = new Map<number, ChartPoint>();

  constructor(private readonly maxPoints = 5000) {}

  get size(): number {
    return this.byStep.size;
  }

  /** Merge points; later values for a step override earlier ones field by field. Returns true if anything changed. */
  add(points: readonly ChartPoint[]): boolean {
    let changed = false;
    for (const p of points) {
      if (!p || typeof p.step !== 'number' || !Number.isFinite(p.step)) continue;
      const prev = this.byStep.get(p.step) ?? { step: p.step };
      const next: ChartPoint = { ...prev };
      for (const k of [...SERIES, 'epoch', 't'] as const) {
        const v = num(p[k]);
        if (v !== null && v !== prev[k]) {
          next[k] = v;
          changed = true;
        }
      }
      if (!this.byStep.has(p.step)) changed = true;
      this.byStep.set(p.step, next);
    }
    if (this.byStep.size > this.maxPoints) {
      const drop = [...this.byStep.keys()].sort((a, b) => a - b).slice(0, this.byStep.size - this.maxPoints);
      for (const s of drop) this.byStep.delete(s);
    }
    return changed;
  }

  /** Columns for uPlot: [steps, ...series], sorted by step. */
  columns(series: readonly Series[]): [number[], ...(number | null)[][]] {
    const pts = [...this.byStep.values()].sort((a, b) => a.step - b.step);
    return [pts.map((p) => p.step), ...series.map((s) => pts.map((p) => num(p[s])))];
  }

  /** The newest value of a series, or null. */
  latest(s: Series): number | null {
    let best: ChartPoint | null = null;
    for (const p of this.byStep.values()) if (num(p[s]) !== null && (!best || p.step > best.step)) best = p;
    return best ? num(best[s]) : null;
  }
}
