// npm run bench:comm — sync vs diloco (int8, sparse) on the same data, the same token budget and
// the same workers, each worker on an emulated home link (default 10 Mbit/s up, 50 Mbit/s down:
// worker-web/client/link.ts, the Node worker's --link). Coordinator and workers run in this process
// (CPU backend, tiny preset, loopback); bytes are counted at the coordinator's sockets
// (/api/status wire). Prints a table and, as the last line, one JSON object (issue 13).
//
//   npx tsx bench/comm.ts [--workers 2] [--rows-per-step 4] [--inner-steps 50] [--rounds 2] [--link 10mbit/50mbit]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCoordinator } from '../coordinator/coordinator.ts';
import { Evaluator } from '../coordinator/train/evaluate.ts';
import { createCpuHost } from '../worker-web/client/cpu-host.ts';
import { paceSocket, parseLink } from '../worker-web/client/link.ts';
import { WorkerClient } from '../worker-web/client/worker-client.ts';

const { values } = parseArgs({ options: {
  workers: { type: 'string', default: '2' }, 'rows-per-step': { type: 'string', default: '4' }, 'inner-steps': { type: 'string', default: '50' },
  rounds: { type: 'string', default: '2' }, link: { type: 'string', default: '10mbit/50mbit' },
} });
const K = Number(values.workers), b = Number(values['rows-per-step']), H = Number(values['inner-steps']), R = Number(values.rounds);
const link = parseLink(String(values.link));
const rowsBudget = K * b * H * R;

interface Run { mode: string; compress: string; innerSteps: number; bytesIn: number; bytesOut: number; tokens: number; bytesPerToken: number; evalLoss: number; wallSeconds: number; steps: number }

async function run(mode: 'sync' | 'diloco', compress: 'none' | 'int8' | 'sparse'): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-comm-'));
  const sync = mode === 'sync';
  const c = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
    adminToken: 'bench-comm-token', mode, compress, seed: 1, lr: 3e-3, warmupSteps: sync ? 10 : 10, maxMicroBatch: b,
    globalBatch: K * b, maxSteps: sync ? rowsBudget / (K * b) : R, innerSteps: H, minWorkers: K, quorum: K,
    leaseMs: 120_000, heartbeatMs: 2_000, deadAfterMs: 60_000, maxShare: 1,
  });
  const workers = Array.from({ length: K }, (_, i) => new WorkerClient({
    url: c.url, name: `w${i}`, host: createCpuHost({ description: 'bench cpu', probedBytes: 256 * 2 ** 20 }), seed: i + 1,
    log: () => undefined, wrapSocket: (s) => void paceSocket(s, link),
  }));
  const t0 = Date.now();
  for (const w of workers) await w.start();
  while (!c.trainer.finished) await new Promise((r) => setTimeout(r, 100));
  const wallSeconds = (Date.now() - t0) / 1000;
  const status = c.ctx.status();
  const ev = new Evaluator(c.trainer.model, c.trainer.dataset, 64);
  const evalLoss = (await ev.run(c.trainer.params)).loss;
  ev.dispose();
  for (const w of workers) await w.stop('bench over');
  await c.close();
  rmSync(dir, { recursive: true, force: true });
  const wire = status.wire!;
  return { mode, compress, innerSteps: sync ? 1 : H, bytesIn: wire.bytesIn, bytesOut: wire.bytesOut, tokens: status.tokensTrained, bytesPerToken: (wire.bytesIn + wire.bytesOut) / status.tokensTrained, evalLoss, wallSeconds, steps: c.trainer.step };
}

const runs: Run[] = [];
for (const [m, cmp] of [['sync', 'none'], ['diloco', 'int8'], ['diloco', 'sparse']] as const) {
  const r = await run(m, cmp);
  runs.push(r);
  console.log(`${r.mode.padEnd(6)} ${r.compress.padEnd(6)} H=${String(r.innerSteps).padEnd(3)} steps ${String(r.steps).padStart(4)}  tokens ${String(r.tokens).padStart(6)}  in ${(r.bytesIn / 1e6).toFixed(2).padStart(8)} MB  out ${(r.bytesOut / 1e6).toFixed(2).padStart(8)} MB  ${r.bytesPerToken.toFixed(1).padStart(9)} B/token  eval loss ${r.evalLoss.toFixed(4)}  wall ${r.wallSeconds.toFixed(1)} s`);
}
const [s, ...d] = runs;
const out = {
  preset: 'tiny', tokens: s.tokens, link: String(values.link),
  sync: { bytesPerToken: s.bytesPerToken, evalLoss: s.evalLoss, wallSeconds: s.wallSeconds },
  diloco: d.map((r) => ({ compress: r.compress, innerSteps: r.innerSteps, bytesPerToken: r.bytesPerToken, evalLoss: r.evalLoss, wallSeconds: r.wallSeconds })),
  bestBytesRatio: Math.max(...d.map((r) => s.bytesPerToken / r.bytesPerToken)),
  bestWallRatio: Math.max(...d.map((r) => s.wallSeconds / r.wallSeconds)),
};
console.log(JSON.stringify(out));
process.exit(0);
