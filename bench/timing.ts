// One timing discipline for every peer: warm up (compiles pipelines, fills caches), then run
// N iterations back to back and end with ONE read-back, so queued GPU work is included and
// each peer pays the same synchronisation. N comes from a time budget measured on the warm-up.

export interface Timed {
  /** Mean wall time per iteration, ms (0 when skipped). */
  ms: number;
  iters: number;
  /** Set when the measurement was skipped and why (budget, error). */
  skipped?: string;
}

export interface TimingBudget {
  budgetMs: number;
  maxIters: number;
}

/**
 * `enqueue` submits one iteration's work without waiting; `sync` waits for everything
 * submitted so far (a read-back). For peers whose API is synchronous per call (our
 * forwardBackward reads back its gradient), `sync` may be a no-op.
 */
export async function timeIt(
  enqueue: () => void | Promise<void>,
  sync: () => Promise<void>,
  budget: TimingBudget,
): Promise<Timed> {
  // Warm-up 1: compiles everything. Warm-up 2 times one warm iteration to size N.
  await enqueue();
  await sync();
  const w0 = performance.now();
  await enqueue();
  await sync();
  const one = performance.now() - w0;
  // A warm run already over budget is the measurement (N = 1): no point repeating it.
  if (one >= budget.budgetMs) return { ms: one, iters: 1 };
  const iters = Math.max(1, Math.min(budget.maxIters, Math.floor(budget.budgetMs / Math.max(one, 1e-3))));
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await enqueue();
  await sync();
  return { ms: (performance.now() - t0) / iters, iters };
}

export function gflops(flops: number, ms: number): number {
  return ms > 0 ? flops / (ms * 1e6) : 0;
}
