// The coordinator process of `npm run loadtest`: a real coordinator (startCoordinator, the same
// wiring as `npm start`) on self-describing synthetic data (shared/data/synthetic.ts: each row's
// first tokens encode its sample id, so the load generator can count lost / doubled samples from
// the tasks it was acknowledged for). Reports its URL, then answers the parent's measurement
// requests over IPC: CPU time, RSS, and event-loop delay measured in this process
// (perf_hooks.monitorEventLoopDelay; lag = the timer's delay beyond its resolution).
//
// argv[2]: the coordinator config as JSON; argv[3]: dataset size. Started by hand (no IPC parent) it
// prints {url} and serves until killed: a target for `npm run loadtest -- --url URL`.

import { monitorEventLoopDelay } from 'node:perf_hooks';
import pino from 'pino';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';

const RESOLUTION_MS = 5;

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}');
  const size = Number(process.argv[3]);
  const c = await startCoordinator(config, {
    logger: pino({ level: config.logLevel ?? 'warn' }),
    dataset: (T) => syntheticDataset(size, T),
  });
  const eld = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  eld.enable();
  let cpu0 = process.cpuUsage();
  let t0 = Date.now();
  const ms = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  process.on('message', (m: { op: string }) => {
    if (m.op === 'reset') {
      eld.reset();
      cpu0 = process.cpuUsage();
      t0 = Date.now();
      process.send!({ op: 'reset' });
    } else if (m.op === 'stats') {
      const cpu = process.cpuUsage(cpu0);
      process.send!({
        op: 'stats',
        wallMs: Date.now() - t0,
        cpuMs: (cpu.user + cpu.system) / 1000,
        rssMB: process.memoryUsage().rss / 2 ** 20,
        lag: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) },
        step: c.trainer.step,
        doubled: c.trainer.doubled,
        globalBatch: c.config.globalBatch,
      });
    } else if (m.op === 'close') {
      void c.close().then(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  // Started by hand (no IPC): say where it listens, for `npm run loadtest -- --url URL`.
  if (!process.send) return void process.stdout.write(`${JSON.stringify({ url: c.url, paramCount: c.trainer.paramCount })}\n`);
  process.send({ op: 'ready', url: c.url, paramCount: c.trainer.paramCount });
}

main().catch((e) => {
  process.send?.({ op: 'error', message: (e as Error).message, code: (e as { code?: string }).code });
  process.exit(1);
});
