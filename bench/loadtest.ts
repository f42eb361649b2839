// `npm run loadtest -- --workers N [--preset tiny] [--steps S] [--processes P] [--mode sync|diloco]
//  [--global-batch G] [--inner-steps H] [--compute-ms MS] [--url URL] [--workers-nice N]`
//
// Starts a real coordinator in its own process (bench/loadtest/coordinator-proc.ts; or targets
// --url), then N simulated workers spread over P child processes (bench/loadtest/workers-proc.ts):
// real socket.io clients, real protocol, synthetic gradients. Measures from the outside: step
// times from when tasks reach the workers, contributors per step and lost / doubled samples from
// the tasks the workers were acknowledged for (sample ids decoded from the rows' tokens),
// /healthz latency polled while training; the coordinator process reports its own CPU time, RSS
// and event-loop delay. Prints a table, then one JSON line (the last line). Exit code 1 when the
// run did not complete its steps, or lost / doubled a sample.
//
// The simulated workers' processes run at a lower CPU priority (--workers-nice, default 10): real
// volunteers compute on their own machines, so on one shared box the simulator must not take the
// coordinator's CPU; what is measured is the coordinator. --workers-nice 0 shares the CPU evenly.
//
// --mode diloco: the coordinator runs rounds (docs/diloco.md): each worker is leased H inner steps
// of B = max(1, round(G / N)) rows (G: --global-batch, the rows of one inner step over all
// workers), answers with a packed delta the coordinator's delta judge accepts (real inner steps,
// one round per weights version and process: bench/loadtest/round-deltas.ts) and follows the
// published weights through `update`s. A step is a round (one outer step). Lost = rows leased in
// the run's rounds and never acknowledged in any round; doubled = rows acknowledged twice.

import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, setPriority, tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AppError } from '../shared/errors.ts';
import { PRESET_NAMES } from '../shared/model/config.ts';
import type { WorkerReport } from './loadtest/workers-proc.ts';
import { formatTable, onceMessage, pct, r1, r3, scrapeStats, type CoordStats, type LoadTestResult } from './loadtest/util.ts';

export { formatTable, type LoadTestResult };

const HERE = dirname(fileURLToPath(import.meta.url));

export interface LoadTestOptions {
  workers: number;
  preset: string;
  steps: number;
  processes: number;
  mode: 'sync' | 'diloco';
  globalBatch: number;
  /** --mode diloco: inner steps per round (the coordinator's --inner-steps). */
  innerSteps: number;
  computeMs: number;
  /** Niceness of the simulated workers' processes (0-19): they stand for remote machines. */
  workersNice: number;
  url?: string;
  /** Give up after this long (connect + train). */
  timeoutMs: number;
}

const USAGE = `usage: npm run loadtest -- --workers N [--preset tiny] [--steps S] [--processes P] [--mode sync|diloco]
                        [--global-batch G] [--inner-steps H] [--compute-ms MS] [--url URL] [--timeout-s T] [--workers-nice N]
  --workers N        simulated workers (socket.io clients)
  --preset P         model preset of the coordinator it starts (default tiny)
  --steps S          optimizer steps to run (default 5)
  --processes P      child processes the workers are spread over (default: CPU count, at most 8)
  --mode M           sync (default) | diloco
  --global-batch G   samples per step (default max(1024, N)); diloco: rows per inner step over all
                     workers (each worker's micro-batch is max(1, round(G / N)) rows)
  --inner-steps H    diloco: inner steps per round (default 4)
  --compute-ms MS    simulated compute time per task before the result is sent, 0.5x..1.5x at
                     random (default 0: results come back at once, the coordinator is saturated)
  --url URL          target a running coordinator instead of starting one (it must serve synthetic data)
  --timeout-s T      give up after T seconds (default 600)
  --workers-nice N   CPU niceness of the simulated workers' processes, 0-19 (default 10: they stand
                     for remote machines, the coordinator under test gets the CPU first)`;

function bad(message: string): AppError {
  return new AppError('ERR_LOADTEST_ARGS', `loadtest: ${message}`, 400, 'see --help');
}

export function parseLoadTestArgs(argv: string[]): LoadTestOptions | null {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv, strict: true, allowPositionals: false,
      options: {
        workers: { type: 'string' }, preset: { type: 'string' }, steps: { type: 'string' }, processes: { type: 'string' }, mode: { type: 'string' },
        'global-batch': { type: 'string' }, 'inner-steps': { type: 'string' }, 'compute-ms': { type: 'string' }, url: { type: 'string' }, 'timeout-s': { type: 'string' }, 'workers-nice': { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    }) as { values: Record<string, string | boolean | undefined> });
  } catch (e) {
    throw bad((e as Error).message.split('\n')[0]);
  }
  if (values.help) return null;
  const int = (name: string, min: number, max: number, def?: number): number => {
    const v = values[name];
    if (v === undefined) {
      if (def === undefined) throw bad(`--${name} is required`);
      return def;
    }
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw bad(`--${name} must be an integer in [${min}, ${max}], got "${v}"`);
    return n;
  };
  const workers = int('workers', 1, 20_000);
  const preset = (values.preset as string | undefined) ?? 'tiny';
  if (!(PRESET_NAMES as readonly string[]).includes(preset)) throw bad(`--preset must be one of ${PRESET_NAMES.join(', ')}, got "${preset}"`);
  const mode = (values.mode as string | undefined) ?? 'sync';
  if (mode !== 'sync' && mode !== 'diloco') throw bad(`--mode must be sync or diloco, got "${mode}"`);
  const url = values.url as string | undefined;
  if (url !== undefined && !/^https?:\/\/[^\s]+$/.test(url)) throw bad(`--url must be an http(s) URL, got "${url}"`);
  return {
    workers,
    preset,
    steps: int('steps', 1, 100_000, 5),
    processes: Math.min(workers, int('processes', 1, 64, Math.min(8, cpus().length))),
    mode,
    globalBatch: int('global-batch', 1, 1 << 20, Math.max(1024, workers)),
    innerSteps: int('inner-steps', 1, 10_000, 4),
    computeMs: int('compute-ms', 0, 600_000, 0),
    workersNice: int('workers-nice', 0, 19, 10),
    url,
    timeoutMs: 1000 * int('timeout-s', 1, 86_400, 600),
  };
}

/** --mode diloco: rows per worker per inner step (the coordinator's --max-micro-batch). */
export function roundMicroBatch(o: Pick<LoadTestOptions, 'globalBatch' | 'workers'>): number {
  return Math.max(1, Math.round(o.globalBatch / o.workers));
}

/** Rows one step consumes: the global batch (sync), or every worker's H micro-batches (diloco). */
function rowsPerStep(o: LoadTestOptions): number {
  return o.mode === 'sync' ? o.globalBatch : o.workers * o.innerSteps * roundMicroBatch(o);
}

const tsx = { execArgv: ['--import', 'tsx'] };

export async function runLoadTest(o: LoadTestOptions, log: (s: string) => void = (s) => process.stderr.write(s + '\n')): Promise<LoadTestResult> {
  const deadline = Date.now() + o.timeoutMs;
  const left = () => Math.max(1000, deadline - Date.now());
  const load0 = loadavg();
  let coord: ChildProcess | null = null;
  let runDir: string | null = null;
  const kids: ChildProcess[] = [];
  try {
    let url = o.url;
    let stats: () => Promise<CoordStats>;
    let reset: () => Promise<void>;
    let startStep = 0;
    if (!url) {
      runDir = mkdtempSync(join(tmpdir(), 'loadtest-'));
      const config = {
        port: 0, host: '127.0.0.1', preset: o.preset, globalBatch: o.globalBatch, maxSteps: o.steps, minWorkers: o.workers, mode: o.mode,
        ...(o.mode === 'diloco' ? { innerSteps: o.innerSteps, maxMicroBatch: roundMicroBatch(o) } : {}),
        // Synthetic gradients (and deltas computed once per process) cannot pass a CPU
        // re-computation: verification is off, as is eval. Diloco deltas are still scored by the
        // delta judge (its loss test and norm check), as every delta is.
        verifyRate: 0, evalEvery: 0, checkpointEvery: 0, runDir, resume: false, logLevel: 'warn',
        leaseMs: 120_000, heartbeatMs: 2_000, deadAfterMs: 60_000,
      };
      // LOADTEST_CPU_PROF=DIR: a V8 CPU profile of the coordinator process is written there.
      const prof = process.env.LOADTEST_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.LOADTEST_CPU_PROF] : [];
      coord = fork(join(HERE, 'loadtest/coordinator-proc.ts'), [JSON.stringify(config), String((o.steps + 1) * rowsPerStep(o))], { execArgv: [...tsx.execArgv, ...prof], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const ready = await onceMessage<{ url: string }>(coord, 'ready', left(), 'coordinator start');
      url = ready.url;
      const c = coord;
      stats = async () => {
        const p = onceMessage<CoordStats>(c, 'stats', 30_000, 'coordinator stats');
        c.send({ op: 'stats' });
        return p;
      };
      reset = async () => {
        const p = onceMessage(c, 'reset', 30_000, 'coordinator reset');
        c.send({ op: 'reset' });
        await p;
      };
    } else {
      const target = url;
      // CPU time from /metrics is since the process started: counted from the reset on.
      let base = 0;
      let t0 = Date.now();
      stats = async () => {
        const st = await scrapeStats(target);
        return { ...st, cpuMs: st.cpuMs - base, wallMs: Date.now() - t0 };
      };
      reset = async () => {
        base = (await scrapeStats(target)).cpuMs; // prom-client also resets its event-loop histogram on each scrape
        t0 = Date.now();
      };
      startStep = (await scrapeStats(target)).step;
    }
    log(`loadtest: coordinator at ${url}; starting ${o.workers} workers in ${o.processes} processes (load average ${loadavg().map((x) => x.toFixed(2)).join(' ')})`);

    const per = Math.floor(o.workers / o.processes);
    let first = 0;
    for (let i = 0; i < o.processes; i++) {
      const count = per + (i < o.workers % o.processes ? 1 : 0);
      const kid = fork(join(HERE, 'loadtest/workers-proc.ts'), [JSON.stringify({ url, count, first, computeMs: o.computeMs, seed: i + 1, mode: o.mode })], { ...tsx, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      kids.push(kid);
      if (o.workersNice > 0 && kid.pid !== undefined) setPriority(kid.pid, o.workersNice);
      first += count;
    }
    await Promise.all(kids.map((k) => onceMessage(k, 'started', left(), 'worker processes start')));
    type Progress = { welcomed: number; finished: number; acks: number; rejected: number };
    const progress = async (): Promise<Progress> => {
      const ps = await Promise.all(kids.map((k) => {
        const p = onceMessage<Progress>(k, 'progress', 30_000, 'worker progress');
        k.send({ op: 'progress' });
        return p;
      }));
      return ps.reduce((a, p) => ({ welcomed: a.welcomed + p.welcomed, finished: a.finished + p.finished, acks: a.acks + p.acks, rejected: a.rejected + p.rejected }), { welcomed: 0, finished: 0, acks: 0, rejected: 0 });
    };
    // Connected: every worker welcomed (or the connect phase's share of the time is over).
    const connectBy = Date.now() + Math.min(left(), 120_000 + 100 * o.workers);
    let p = await progress();
    while (p.welcomed < o.workers && Date.now() < connectBy) {
      await new Promise((r) => setTimeout(r, 250));
      p = await progress();
    }
    const connected = p.welcomed;
    log(`loadtest: ${connected}/${o.workers} workers welcomed; training ${o.steps} steps of ${o.globalBatch} samples`);
    await reset();
    const t0 = Date.now();

    // While training: /healthz polled every 100 ms (one request at a time, bounded by the deadline).
    const healthz: number[] = [];
    let training = true;
    const poller = (async () => {
      while (training && Date.now() < deadline) {
        const s = performance.now();
        try {
          const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) });
          await r.arrayBuffer();
          healthz.push(performance.now() - s);
        } catch {
          healthz.push(10_000);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    let final: CoordStats = await stats();
    let lastProgress = Date.now();
    let lastAcks = -1;
    while (final.step - startStep < o.steps && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      final = await stats();
      if (Date.now() - lastProgress > 2000) {
        const q = await progress();
        if (q.acks !== lastAcks) log(`loadtest: step ${final.step}, ${q.acks} acks, ${q.rejected} rejected, ${Math.round((Date.now() - t0) / 1000)} s`);
        lastAcks = q.acks;
        lastProgress = Date.now();
      }
    }
    training = false;
    await poller;
    const trainMs = Date.now() - t0;

    const reports = await Promise.all(kids.map((k) => {
      const pr = onceMessage<{ report: WorkerReport }>(k, 'report', 60_000, 'worker report');
      k.send({ op: 'stop' });
      return pr.then((m) => m.report);
    }));

    // Accounting from the outside: what the workers were acknowledged for.
    const steps = final.step - startStep;
    const G = final.globalBatch;
    const acks = reports.flatMap((r) => r.acks).filter((a) => a.step >= startStep && a.step < startStep + steps);
    const byStep = new Map<number, { workers: Set<number>; ids: number[]; lastAck: number }>();
    for (const a of acks) {
      const s = byStep.get(a.step) ?? { workers: new Set(), ids: [], lastAck: 0 };
      s.workers.add(a.worker);
      s.ids.push(...a.ids);
      s.lastAck = Math.max(s.lastAck, a.at);
      byStep.set(a.step, s);
    }
    const allIds = acks.flatMap((a) => a.ids);
    const unique = new Set(allIds);
    const doubled = allIds.length - unique.size;
    let lost = 0;
    const contributors: number[] = [];
    const rowsAcked: number[] = [];
    const stepMs: number[] = [];
    const firstAt = (s: number) => Math.min(...reports.map((r) => r.firstTaskAt[s] ?? Infinity));
    for (let s = startStep; s < startStep + steps; s++) {
      const b = byStep.get(s);
      if (o.mode === 'sync') lost += G - (b ? new Set(b.ids).size : 0);
      rowsAcked.push(b ? b.ids.length : 0);
      contributors.push(b ? b.workers.size : 0);
      const start = firstAt(s);
      const end = s + 1 < startStep + steps ? firstAt(s + 1) : (b?.lastAck ?? NaN);
      if (Number.isFinite(start) && Number.isFinite(end)) stepMs.push(end - start);
    }
    if (o.mode === 'diloco') {
      // A round's rows are leased, then acknowledged with its delta; a cut lease's rows are leased
      // again in a later round. Lost: leased in the run's rounds, acknowledged in none.
      const ackedAll = new Set(reports.flatMap((r) => r.acks).flatMap((a) => a.ids));
      const leased = new Set(reports.flatMap((r) => r.leased).filter((l) => l.step >= startStep && l.step < startStep + steps).flatMap((l) => l.ids));
      for (const id of leased) if (!ackedAll.has(id)) lost++;
    }
    const wireBytes = reports.reduce((a, r) => a + r.wire.sent + r.wire.received, 0);
    const load1 = loadavg();
    const result: LoadTestResult = {
      workers: o.workers,
      connected,
      steps,
      contributorsPerStep: { min: contributors.length ? Math.min(...contributors) : 0, median: pct(contributors, 50) },
      stepSeconds: { median: r3(pct(stepMs, 50) / 1000), p95: r3(pct(stepMs, 95) / 1000) },
      coordinatorCpuPerStepMs: r1(final.cpuMs / Math.max(1, steps)),
      eventLoopLagMs: { p50: r1(final.lag.p50), p99: r1(final.lag.p99), max: r1(final.lag.max) },
      healthzMs: { p50: r1(pct(healthz, 50)), p99: r1(pct(healthz, 99)) },
      rssMB: Math.round(final.rssMB),
      wireMBPerStep: r1(wireBytes / Math.max(1, steps) / 1e6),
      lost,
      doubled,
      rejected: reports.reduce((a, r) => a + r.rejected, 0),
      // Context for the figures.
      preset: o.preset,
      mode: o.mode,
      globalBatch: G,
      // Rows acknowledged per step (diloco: every worker's H x B rows of the round).
      rowsPerStep: { min: rowsAcked.length ? Math.min(...rowsAcked) : 0, median: pct(rowsAcked, 50) },
      ...(o.mode === 'diloco' ? { innerSteps: o.innerSteps, microBatch: roundMicroBatch(o), roundsComputed: reports.reduce((a, r) => a + r.roundsComputed, 0) } : {}),
      processes: o.processes,
      workersNice: o.workersNice,
      trainSeconds: r1(trainMs / 1000),
      coordinatorCpuShare: r3(final.cpuMs / Math.max(1, final.wallMs)),
      healthzSamples: healthz.length,
      idMismatches: reports.reduce((a, r) => a + r.idMismatches, 0),
      rejectCodes: reports.reduce((a, r) => {
        for (const [k, v] of Object.entries(r.rejectCodes)) a[k] = (a[k] ?? 0) + v;
        return a;
      }, {} as Record<string, number>),
      coordinatorDoubled: final.doubled,
      loadAverage: { start: load0.map(r1), end: load1.map(r1) },
      cpus: cpus().length,
      errors: reports.flatMap((r) => r.errors).slice(0, 10),
    };
    return result;
  } finally {
    for (const k of kids) if (k.exitCode === null) k.kill();
    if (coord && coord.exitCode === null) {
      coord.send({ op: 'close' });
      await new Promise<void>((r) => {
        const t = setTimeout(() => {
          coord!.kill();
          r();
        }, 5000);
        coord!.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
    if (runDir) rmSync(runDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  let o: LoadTestOptions | null;
  try {
    o = parseLoadTestArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as { code?: string }).code ?? 'ERR_LOADTEST_ARGS'}: ${(e as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (!o) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  try {
    const r = await runLoadTest(o);
    process.stdout.write(formatTable(r) + '\n' + JSON.stringify(r) + '\n');
    if (r.steps < o.steps || r.lost > 0 || r.doubled > 0) process.exitCode = 1;
  } catch (e) {
    const code = (e as { code?: string }).code;
    process.stderr.write(`${code ? `${code}: ` : ''}${(e as Error).message}\n`);
    process.exitCode = 2;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) void main();
