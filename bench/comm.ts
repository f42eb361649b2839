// npm run bench:comm — sync vs diloco (int8, sparse) on the same data, the same token budget and
// the same workers, each worker on an emulated home link (default 10 Mbit/s up, 50 Mbit/s down:
// worker-web/client/link.ts, the Node worker's --link). Coordinator and workers run in this process
// (CPU backend, tiny preset, loopback); bytes are counted at the coordinator's sockets
// (/api/status wire). Prints a table and, as the last line, one JSON object (issue 13).
//
//   npx tsx bench/comm.ts [--workers 2] [--rows-per-step 4] [--inner-steps 50] [--rounds 2] [--link 10mbit/50mbit]
//                         [--codecs int8,sparse] [--outer-lr 0.7] [--outer-momentum 0.9] [--lease-ms 120000] [--curve]
// --curve: the held-out loss (64 samples) of the coordinator's weights at every round boundary
// (every H sync steps: the same tokens), printed per run and kept in the JSON ("curve").

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { startCoordinator } from '../coordinator/coordinator.ts';
import { Evaluator } from '../coordinator/train/evaluate.ts';
import { createCpuHost } from '../worker-web/client/cpu-host.ts';
import { paceSocket, parseLink } from '../worker-web/client/link.ts';
import { WorkerClient } from '../worker-web/client/worker-client.ts';

const { values } = parseArgs({ options: {
  workers: { type: 'string', default: '2' }, 'rows-per-step': { type: 'string', default: '4' }, 'inner-steps': { type: 'string', default: '50' },
  rounds: { type: 'string', default: '2' }, link: { type: 'string', default: '10mbit/50mbit' },
  codecs: { type: 'string', default: 'int8,sparse' }, one: { type: 'string' }, 'outer-lr': { type: 'string', default: '0.7' }, 'outer-momentum': { type: 'string', default: '0.9' }, 'lease-ms': { type: 'string', default: '120000' }, curve: { type: 'boolean', default: false },
} });
const codecs = String(values.codecs).split(',');
for (const x of codecs) if (!['none', 'fp16', 'int8', 'sparse'].includes(x)) throw new Error(`bench:comm: --codecs: unknown codec '${x}' (none, fp16, int8, sparse)`);
const outerLr = Number(values['outer-lr']);
const outerMomentum = Number(values['outer-momentum']);
const K = Number(values.workers), b = Number(values['rows-per-step']), H = Number(values['inner-steps']), R = Number(values.rounds);
const link = parseLink(String(values.link));
const rowsBudget = K * b * H * R;

interface Run { mode: string; compress: string; innerSteps: number; bytesIn: number; bytesOut: number; tokens: number; bytesPerToken: number; evalLoss: number; wallSeconds: number; steps: number; curve: Array<{ tokens: number; evalLoss: number }> }

async function run(mode: 'sync' | 'diloco', compress: string): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-comm-'));
  const sync = mode === 'sync';
  const c = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
    adminToken: 'bench-comm-token', mode, compress: compress as 'none', outerLr, outerMomentum, seed: 1, lr: 3e-3, warmupSteps: sync ? 10 : 10, maxMicroBatch: b,
    globalBatch: K * b, maxSteps: sync ? rowsBudget / (K * b) : R, innerSteps: H, minWorkers: K, quorum: K,
    leaseMs: Number(values['lease-ms']), heartbeatMs: 2_000, deadAfterMs: 60_000, maxShare: 1,
  });
  const workers = Array.from({ length: K }, (_, i) => new WorkerClient({
    url: c.url, name: `w${i}`, host: createCpuHost({ description: 'bench cpu', probedBytes: 256 * 2 ** 20 }), seed: i + 1,
    log: () => undefined, wrapSocket: (s) => void paceSocket(s, link),
  }));
  const t0 = Date.now();
  for (const w of workers) await w.start();
  // Curve points: copies of the coordinator's weights between steps (the poll sees the weights
  // after step `mark`), evaluated after the run (evaluating during it stalled sync steps).
  const snaps: Array<{ tokens: number; params: Float32Array }> = [];
  const every = sync ? H : 1;
  let mark = every;
  while (!c.trainer.finished) {
    await new Promise((r) => setTimeout(r, 20));
    if (values.curve && c.trainer.step >= mark && !c.trainer.finished) {
      snaps.push({ tokens: c.trainer.tokensTrained, params: new Float32Array(c.trainer.params) });
      mark += every;
    }
  }
  const wallSeconds = (Date.now() - t0) / 1000;
  const status = c.ctx.status();
  const ev = new Evaluator(c.trainer.model, c.trainer.dataset, 64);
  const curve: Run['curve'] = [];
  for (const x of snaps) curve.push({ tokens: x.tokens, evalLoss: (await ev.run(x.params)).loss });
  const evalLoss = (await ev.run(c.trainer.params)).loss;
  ev.dispose();
  curve.push({ tokens: status.tokensTrained, evalLoss });
  for (const w of workers) await w.stop('bench over');
  await c.close();
  rmSync(dir, { recursive: true, force: true });
  const wire = status.wire!;
  return { mode, compress, innerSteps: sync ? 1 : H, bytesIn: wire.bytesIn, bytesOut: wire.bytesOut, tokens: status.tokensTrained, bytesPerToken: (wire.bytesIn + wire.bytesOut) / status.tokensTrained, evalLoss, wallSeconds, steps: c.trainer.step, curve };
}

// Each configuration runs in a child process of its own (a second coordinator + workers in one
// process stalled on a lease until it expired: a fresh process measures each run alone).
if (values.one) {
  const [m, cmp] = values.one.split(':');
  console.log(JSON.stringify(await run(m as 'sync' | 'diloco', cmp)));
  process.exit(0);
}
const runs: Run[] = [];
const self = process.argv.slice(1).filter((a) => !a.startsWith('--one'));
for (const [m, cmp] of [['sync', 'none'] as const, ...codecs.map((x) => ['diloco', x] as const)]) {
  const text = execFileSync(process.execPath, [...process.execArgv, ...self, '--one', `${m}:${cmp}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  const r = JSON.parse(text.trim().split('\n').at(-1)!) as Run;
  runs.push(r);
  console.log(`${r.mode.padEnd(6)} ${r.compress.padEnd(6)} H=${String(r.innerSteps).padEnd(3)} steps ${String(r.steps).padStart(4)}  tokens ${String(r.tokens).padStart(6)}  in ${(r.bytesIn / 1e6).toFixed(2).padStart(8)} MB  out ${(r.bytesOut / 1e6).toFixed(2).padStart(8)} MB  ${r.bytesPerToken.toFixed(1).padStart(9)} B/token  eval loss ${r.evalLoss.toFixed(4)}  wall ${r.wallSeconds.toFixed(1)} s`);
  if (values.curve) console.log(`  curve (tokens: eval loss) ${r.curve.map((p) => `${p.tokens}: ${p.evalLoss.toFixed(4)}`).join(', ')}`);
}
const [s, ...d] = runs;
const out = {
  preset: 'tiny', tokens: s.tokens, link: String(values.link),
  sync: { bytesPerToken: s.bytesPerToken, evalLoss: s.evalLoss, wallSeconds: s.wallSeconds, ...(values.curve ? { curve: s.curve } : {}) },
  diloco: d.map((r) => ({ compress: r.compress, innerSteps: r.innerSteps, bytesPerToken: r.bytesPerToken, evalLoss: r.evalLoss, wallSeconds: r.wallSeconds, ...(values.curve ? { curve: r.curve } : {}) })),
  bestBytesRatio: Math.max(...d.map((r) => s.bytesPerToken / r.bytesPerToken)),
  bestWallRatio: Math.max(...d.map((r) => s.wallSeconds / r.wallSeconds)),
};
console.log(JSON.stringify(out));
process.exit(0);
