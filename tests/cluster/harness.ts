// Real processes for the multi-coordinator tests: coordinators (`node --import tsx
// coordinator/main.ts --redis ...`, killed with SIGKILL like a crashed machine) and Node workers
// (`worker-web/node/main.ts --backend cpu`, several --url, an audit --trace file each), plus the
// readings the tests take from the outside: /api/status, the coordinators' JSON log lines (when a
// process became leader and which step it resumed at), the workers' traces.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseTrace, type TraceLine } from '../chaos/accounting.ts';
import { until, untilAsync } from '../coordinator/test-worker.ts';

const ROOT = join(import.meta.dirname, '..', '..');

export interface Proc {
  name: string;
  child: ChildProcess;
  out(): string;
  alive(): boolean;
  /** SIGKILL and wait until it is gone. */
  kill(): Promise<void>;
}

function spawnTs(name: string, script: string, args: string[]): Proc {
  // node itself (not an npx wrapper) so that SIGKILL hits the process under test.
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const alive = () => child.exitCode === null && child.signalCode === null;
  return {
    name, child, out: () => out, alive,
    async kill() {
      if (!alive()) return;
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGKILL');
      await gone;
    },
  };
}

export interface Coordinator extends Proc {
  url: string;
}

export async function startCoordinatorProc(name: string, args: string[]): Promise<Coordinator> {
  const p = spawnTs(name, 'coordinator/main.ts', ['--port', '0', '--host', '127.0.0.1', ...args]);
  await until(() => /COORDINATOR_URL=(\S+)/.test(p.out()) || !p.alive(), 60_000, `${name} to start`);
  const m = /COORDINATOR_URL=(\S+)/.exec(p.out());
  if (!m) throw new Error(`${name} did not start:\n${p.out()}`);
  return { ...p, url: m[1] };
}

export function startWorkerProc(name: string, urls: string[], trace: string, extra: string[] = []): Proc {
  return spawnTs(name, 'worker-web/node/main.ts', ['--url', urls.join(','), '--backend', 'cpu', '--name', name, '--trace', trace, '--quiet', ...extra]);
}

// The polling waits are the coordinator tests' (one definition for both harnesses).
export { until, untilAsync };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Status = any;

export async function status(c: Coordinator): Promise<Status> {
  const r = await fetch(c.url + '/api/status', { signal: AbortSignal.timeout(5_000) });
  return r.json();
}

/** The process's role as it reports itself ('leader' | 'gateway'), or null when it does not answer. */
export async function selfRole(c: Coordinator): Promise<string | null> {
  try {
    const s = await status(c);
    return s.cluster.processes.find((p: { id: string }) => p.id === s.cluster.self)?.role ?? null;
  } catch {
    return null;
  }
}

export interface Election {
  c: Coordinator;
  epoch: number;
  /** When it started leading (its log line's time). */
  t: number;
  /** The step it resumed at. */
  step: number;
}

/** Every time one of `cs` started leading (epoch, when, the step it resumed at), from their JSON logs, oldest first. */
export function elections(cs: Coordinator[]): Election[] {
  const out: Election[] = [];
  for (const c of cs) {
    for (const line of c.out().split('\n')) {
      if (!line.startsWith('{')) continue;
      let o: { msg?: string; time?: number; step?: number; epoch?: number };
      try {
        o = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof o.epoch === 'number' && typeof o.msg === 'string' && o.msg.startsWith(`leader (epoch ${o.epoch})`) && typeof o.time === 'number' && typeof o.step === 'number') {
        out.push({ c, epoch: o.epoch, t: o.time, step: o.step });
      }
    }
  }
  return out.sort((a, b) => a.t - b.t);
}

export function readTrace(file: string): TraceLine[] {
  return existsSync(file) ? parseTrace(readFileSync(file, 'utf8')) : [];
}

/**
 * Resolves once every trace's newest task is for one and the same step, newer than when called:
 * the moment a step has just been handed out. Acks of the step before reached every worker first
 * (on each connection the ack went out before the next task), and with workers that hold their
 * results back (--fault slow:MS) no ack of this step is on its way: a kill now leaves no
 * acknowledgement in flight, so the traces account for everything the run trained.
 */
export async function stepJustStarted(traces: string[], ms: number): Promise<number> {
  const lastTask = (f: string) => readTrace(f).filter((e) => e.ev === 'task').at(-1) as { step: number; t: number } | undefined;
  const before = traces.map((f) => lastTask(f)?.t ?? 0);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const now = traces.map(lastTask);
    if (now.every((e, i) => e && e.t > before[i]) && new Set(now.map((e) => e!.step)).size === 1) return now[0]!.step;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('no step start seen in every worker trace');
}

/**
 * Each ack attributed to the leader incarnation that sent it, by its time: a worker on a gateway
 * that survived the leader's death is not welcomed again, so the welcome-based attribution of
 * countIndependently (tests/chaos/accounting.ts) would miss the change. A synthetic welcome before
 * each ack, at the ack's time, makes the incarnation the one in office when the ack arrived.
 */
export function byAckTime(trace: TraceLine[]): TraceLine[] {
  const out: TraceLine[] = [];
  for (const e of trace) {
    if (e.ev === 'ack') out.push({ t: e.t, ev: 'welcome', workerId: 'by-ack-time' });
    if (e.ev !== 'welcome') out.push(e);
  }
  return out;
}
