// One timing discipline for every peer, interleaved so that a noisy, shared machine hurts all
// peers alike:
//   1. warm-up: each subject runs once (compiles pipelines, fills caches), then once more timed;
//      that warm run sizes N (iterations per sample) from the time budget;
//   2. R rounds: in each round every subject (order rotated per round) runs N iterations back to
//      back, ending with ONE read-back so all queued GPU work is inside the sample;
//   3. the figure is the best (minimum) per-iteration time over the samples: on a machine shared
//      with other work the minimum is the least disturbed one. The median is kept too.

export interface TimingBudget {
  /** Time budget of one sample (N iterations), ms. */
  budgetMs: number;
  maxIters: number;
  /** Samples per subject after the warm-up (>= 1). */
  rounds: number;
}

export interface Subject {
  /** Queue one iteration's work (may wait, for peers whose API returns results). */
  enqueue(): void | Promise<void>;
  /** Wait for everything queued so far, through a read-back. */
  sync(): Promise<void>;
}

export interface Timed {
  /** Best per-iteration time over the samples, ms. */
  ms: number;
  medianMs: number;
  /** Iterations per sample. */
  iters: number;
  samples: number;
}

export type TimedOrError = Timed | { error: string };

async function sample(s: Subject, iters: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) await s.enqueue();
  await s.sync();
  return (performance.now() - t0) / iters;
}

function median(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

export async function measure(subjects: Record<string, Subject>, budget: TimingBudget): Promise<Record<string, TimedOrError>> {
  const names = Object.keys(subjects);
  const out: Record<string, TimedOrError> = {};
  const samples = new Map<string, number[]>();
  const iters = new Map<string, number>();
  for (const n of names) {
    try {
      await sample(subjects[n], 1);
      const one = await sample(subjects[n], 1);
      const it = Math.max(1, Math.min(budget.maxIters, Math.floor(budget.budgetMs / Math.max(one, 1e-3))));
      iters.set(n, it);
      // A warm single run at N = 1 is already a valid sample; don't pay for it twice.
      samples.set(n, it === 1 ? [one] : []);
    } catch (e) {
      out[n] = { error: (e as Error).message.split('\n')[0] };
    }
  }
  for (let r = 0; r < budget.rounds; r++) {
    const live = names.filter((n) => !(n in out));
    for (let i = 0; i < live.length; i++) {
      const n = live[(i + r) % live.length];
      const got = samples.get(n)!;
      if (got.length >= budget.rounds) continue;
      try {
        got.push(await sample(subjects[n], iters.get(n)!));
      } catch (e) {
        out[n] = { error: (e as Error).message.split('\n')[0] };
      }
    }
  }
  for (const n of names) {
    if (n in out) continue;
    const s = samples.get(n)!;
    out[n] = { ms: Math.min(...s), medianMs: median(s), iters: iters.get(n)!, samples: s.length };
  }
  return out;
}

export function gflops(flops: number, ms: number): number {
  return ms > 0 ? flops / (ms * 1e6) : 0;
}
