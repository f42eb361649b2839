// Line charts over the step history, drawn with uPlot (canvas). Each chart owns one container,
// redraws on setData, and follows the container's width.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { History, Series } from './history.ts';

export interface ChartSpec {
  container: HTMLElement;
  title: string;
  series: { key: Series; label: string; color: string }[];
  /** Fixed y range (e.g. [0, 1] for accuracy); default: fitted to the data. */
  yRange?: [number, number];
  /** Formats y-axis tick values (e.g. exponents for learning rates). */
  yFormat?: (v: number) => string;
}

export class StepChart {
  private plot: uPlot | null = null;
  private readonly resize: ResizeObserver;

  constructor(private readonly spec: ChartSpec) {
    this.resize = new ResizeObserver(() => this.plot?.setSize(this.size()));
    this.resize.observe(spec.container);
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(240, this.spec.container.clientWidth - 4), height: 200 };
  }

  update(history: History): void {
    const data = history.columns(this.spec.series.map((s) => s.key)) as uPlot.AlignedData;
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    this.plot = new uPlot(
      {
        ...this.size(),
        title: this.spec.title,
        scales: { x: { time: false }, ...(this.spec.yRange ? { y: { range: this.spec.yRange } } : {}) },
        axes: [{ label: 'step' }, { size: 72, ...(this.spec.yFormat ? { values: (_u: uPlot, vals: number[]) => vals.map((v) => (v === null ? '' : this.spec.yFormat!(v))) } : {}) }],
        series: [{ label: 'step' }, ...this.spec.series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: true, points: { show: false } }))],
      },
      data,
      this.spec.container,
    );
    this.spec.container.dataset.drawn = 'true';
  }

  /** Points currently drawn (for tests via data-points). */
  get points(): number {
    return this.plot?.data[0]?.length ?? 0;
  }
}
