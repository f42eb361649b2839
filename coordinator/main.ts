// `npm start`: parse the config, start the coordinator, print where to go, checkpoint on
// SIGINT/SIGTERM. Exit codes: 0 clean stop, 2 bad configuration, 1 anything else.
// The line `COORDINATOR_URL=<url>` on stdout is for scripts and tests that start it as a child.

import { networkInterfaces } from 'node:os';
import { isAppError } from '../shared/errors.ts';
import { loadConfig, USAGE } from './config.ts';
import { describeInitSource, startCoordinator } from './coordinator.ts';

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = loadConfig(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const c = await startCoordinator(parsed.config);
  const lan = Object.values(networkInterfaces()).flat().filter((i) => i && i.family === 'IPv4' && !i.internal).map((i) => i!.address);
  const lines = [
    '',
    `  Coordinator ready: ${c.config.preset} model, ${c.trainer.paramCount.toLocaleString('en-US')} parameters, step ${c.trainer.step} (${describeInitSource(c.initSource)})`,
    `  Dashboard:   ${c.url}/`,
    `  Worker tab:  ${c.url}/worker`,
    `  Node worker: npm run worker -- --url ${c.url} --backend cpu`,
    ...(parsed.config.host === '0.0.0.0' ? lan.map((a) => `  On your network: http://${a}:${c.port}/worker`) : []),
    `  Admin token: ${c.adminToken}${c.adminTokenGenerated ? '   (generated; set --admin-token or ADMIN_TOKEN to fix it)' : ''}`,
    ...c.skippedCheckpoints.map((s) => `  WARNING corrupt checkpoint skipped: ${s.error}`),
    '',
    `COORDINATOR_URL=${c.url}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));

  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${sig}: writing a final checkpoint and stopping...\n`);
    c.close({ checkpoint: true }).then(
      () => process.exit(0),
      (e) => {
        process.stderr.write(`shutdown failed: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e) => {
  const msg = isAppError(e) ? e.message : (e as Error).stack ?? String(e);
  process.stderr.write(`${msg.startsWith('coordinator') ? '' : 'coordinator: '}${msg}\n`);
  process.exit(isAppError(e) && e.status < 500 ? 2 : 1);
});
