// Helpers of `npm run loadtest` (bench/loadtest.ts): the result's shape and its table, IPC with the
// child processes, percentiles, and the stats of a coordinator reached only by URL (--url).

import type { ChildProcess } from 'node:child_process';
import { AppError } from '../../shared/errors.ts';

export interface LoadTestResult {
  workers: number;
  connected: number;
  steps: number;
  contributorsPerStep: { min: number; median: number };
  stepSeconds: { median: number; p95: number };
  coordinatorCpuPerStepMs: number;
  eventLoopLagMs: { p50: number; p99: number; max: number };
  healthzMs: { p50: number; p99: number };
  rssMB: number;
  wireMBPerStep: number;
  lost: number;
  doubled: number;
  rejected: number;
  [k: string]: unknown;
}

export function onceMessage<T>(child: ChildProcess, op: string, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      reject(new AppError('ERR_LOADTEST_TIMEOUT', `loadtest: no ${what} within ${timeoutMs} ms`, 500));
    }, timeoutMs);
    const onMsg = (m: { op: string; message?: string }) => {
      if (m.op === op) {
        cleanup();
        resolve(m as T);
      } else if (m.op === 'error') {
        cleanup();
        reject(new AppError('ERR_LOADTEST_CHILD', `loadtest: ${what} failed: ${m.message}`, 500));
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new AppError('ERR_LOADTEST_CHILD', `loadtest: child exited (${code}) before ${what}`, 500));
    };
    const cleanup = () => {
      clearTimeout(t);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    child.on('message', onMsg);
    child.on('exit', onExit);
  });
}

export function pct(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
export const r1 = (x: number) => Math.round(x * 10) / 10;
export const r3 = (x: number) => Math.round(x * 1000) / 1000;

export interface CoordStats { wallMs: number; cpuMs: number; rssMB: number; lag: { p50: number; p99: number; max: number }; step: number; doubled: number; globalBatch: number }

/** Stats of a coordinator we did not start: its /metrics (prom-client default metrics). */
export async function scrapeStats(url: string): Promise<CoordStats> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const v = (name: string) => Number(text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([^\\s]+)$`, 'm'))?.[1] ?? NaN);
  const h = (await (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) })).json()) as { step: number };
  const s = (await (await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(10_000) })).json()) as { globalBatch: number };
  return {
    wallMs: 0, cpuMs: 1000 * v('vt_process_process_cpu_seconds_total'), rssMB: v('vt_process_process_resident_memory_bytes') / 2 ** 20,
    lag: { p50: 1000 * v('vt_process_nodejs_eventloop_lag_p50_seconds'), p99: 1000 * v('vt_process_nodejs_eventloop_lag_p99_seconds'), max: 1000 * v('vt_process_nodejs_eventloop_lag_max_seconds') },
    step: h.step, doubled: v('vt_samples_doubled'), globalBatch: s.globalBatch,
  };
}

export function formatTable(r: LoadTestResult): string {
  const rows: Array<[string, string]> = [
    ['workers (connected)', `${r.workers} (${r.connected})`],
    r.mode === 'diloco'
      ? ['rounds x rows (H x B per worker)', `${r.steps} x ${(r.rowsPerStep as { median: number }).median} (${r.innerSteps} x ${r.microBatch})`]
      : ['steps x global batch', `${r.steps} x ${r.globalBatch}`],
    ['contributors / step (min, median)', `${r.contributorsPerStep.min}, ${r.contributorsPerStep.median}`],
    ['step seconds (median, p95)', `${r.stepSeconds.median}, ${r.stepSeconds.p95}`],
    ['coordinator CPU / step (ms)', `${r.coordinatorCpuPerStepMs}`],
    ['event-loop lag ms (p50, p99, max)', `${r.eventLoopLagMs.p50}, ${r.eventLoopLagMs.p99}, ${r.eventLoopLagMs.max}`],
    ['/healthz ms (p50, p99)', `${r.healthzMs.p50}, ${r.healthzMs.p99}`],
    ['coordinator RSS (MB)', `${r.rssMB}`],
    ['wire MB / step', `${r.wireMBPerStep}`],
    ['lost / doubled / rejected', `${r.lost} / ${r.doubled} / ${r.rejected}`],
    ['load average (start; end)', `${(r.loadAverage as { start: number[] }).start.join(' ')}; ${(r.loadAverage as { end: number[] }).end.join(' ')}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

