// `npm run worker -- --url http://HOST:PORT[,http://HOST2:PORT2] [--backend webgpu|cpu] [--memory 2GiB] [--fault F] [--name N]`
// The Node worker: the same loop and engine as the browser tab, for GPU servers, tests and the
// chaos suite. Exit codes: 0 after a clean stop (SIGINT/SIGTERM, or kicked), 2 on bad flags,
// 1 if the engine cannot start.

import { appendFileSync } from 'node:fs';
import os from 'node:os';
import { isAppError } from '../../shared/errors.ts';
import { formatFault } from '../client/faults.ts';
import { formatBytes } from '../../shared/memory/units.ts';
import { WorkerClient, type LogLevel } from '../client/worker-client.ts';
import { paceSocket } from '../client/link.ts';
import { parseWorkerArgs, USAGE } from './args.ts';
import { createNodeHost } from './host.ts';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

async function main(): Promise<number> {
  let args;
  try {
    args = parseWorkerArgs(process.argv.slice(2), os.hostname().slice(0, 64) || 'node-worker');
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const minLevel = args.quiet ? LEVELS.warn : process.env.WORKER_DEBUG ? LEVELS.debug : LEVELS.info;
  const log = (level: LogLevel, msg: string) => {
    if (LEVELS[level] < minLevel) return;
    const line = `${new Date().toISOString().slice(11, 19)} ${level.padEnd(5)} [${args.name}] ${msg}\n`;
    (level === 'error' || level === 'warn' ? process.stderr : process.stdout).write(line);
  };

  const host = await createNodeHost(args.backend, args.memoryCap);
  const client = new WorkerClient({
    url: args.url,
    urls: args.urls,
    host,
    name: args.name,
    userCapBytes: args.memoryCap,
    fault: args.fault,
    seed: args.seed,
    joinToken: args.joinToken,
    agent: 'node-worker/0.1',
    log,
    ...(args.link ? { wrapSocket: (s: unknown) => void paceSocket(s, args.link!) } : {}),
    // Synchronous appends: a kill -9 loses at most the event being written, never reorders them.
    ...(args.trace ? { trace: (e) => appendFileSync(args.trace!, JSON.stringify({ t: Date.now(), ...e }) + '\n') } : {}),
  });
  let lastReport = 0;
  const stop = (sig: string) => {
    log('info', `${sig}: leaving the cluster`);
    void client.stop(`worker received ${sig}`);
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));

  log('info', `backend ${args.backend}, fault ${formatFault(args.fault)}` + (args.memoryCap ? `, memory cap ${formatBytes(args.memoryCap)}` : '')
    + (args.link ? `, link ${args.link.upBps / 1e6} Mbit/s up / ${args.link.downBps / 1e6} Mbit/s down (emulated)` : ''));
  try {
    await client.start();
  } catch (e) {
    log('error', `cannot start the ${args.backend} engine: ${(e as Error).message}`);
    return 1;
  }
  const d = client.stats;
  log('info', `device: ${d.adapter?.vendor} ${d.adapter?.architecture} ${d.adapter?.description}` +
    `${d.adapter?.isSoftware ? ' (software)' : ''}` + (d.probedBytes ? `, probed ${formatBytes(d.probedBytes)}` : ''));
  // One summary line every 10 s while training (per-task lines are debug level).
  const timer = setInterval(() => {
    const s = client.stats;
    if (s.tasksDone === lastReport) return;
    lastReport = s.tasksDone;
    log('info', `step ${s.step}: ${s.tasksDone} tasks, ${s.accepted} accepted, ${s.rejected} rejected, ` +
      `loss ${s.lastLoss?.toFixed(4) ?? '-'}, ${s.tokensPerSec.toFixed(0)} tok/s`);
  }, 10_000);
  timer.unref();
  await client.stoppedPromise();
  clearInterval(timer);
  log('info', `stopped (${client.stats.detail}): ${client.stats.tasksDone} tasks, ${client.stats.accepted} accepted, ${client.stats.rejected} rejected`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // Sockets and timers are closed; give stdout a tick to drain, then go.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (e) => {
    process.stderr.write(`worker: ${isAppError(e) ? e.message : (e as Error).stack}\n`);
    process.exit(1);
  },
);
