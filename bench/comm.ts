// npm run bench:comm — sync vs diloco (int8, sparse) on the same data, the same token budget and
// the same workers, each worker on an emulated home link (default 10 Mbit/s up, 50 Mbit/s down:
// worker-web/client/link.ts, the Node worker's --link). Coordinator and workers run in this process
// (CPU backend, tiny preset, loopback); bytes are counted at the coordinator's sockets
// (/api/status wire). Prints a table and, as the last line, one JSON object (issue 13).
//
//   npx tsx bench/comm.ts [--workers 2] [--rows-per-step 4] [--inner-steps 50] [--rounds 2] [--link 10mbit/50mbit]
//                         [--codecs int8,sparse] [--outer-lr X] [--outer-momentum X] [--lease-ms 120000] [--curve]
// Outer lr / momentum default to the coordinator's (0.7 / 0.9; sparse: 1 / 0, SparseLoCo).
// --curve: the held-out loss (64 samples) of the coordinator's weights at every round boundary
// (every H sync steps: the same tokens) with the wall time it was reached, printed per run and
// kept in the JSON ("curve"). With it, wallToLoss compares the wall time each run needed to reach
// the same loss: the worse of the two final losses (sync's and the diloco run's), first curve point
// at or below it; bestWallRatio is then the best sync/diloco ratio of those (without --curve:
// total wall times).

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
  codecs: { type: 'string', default: 'int8,sparse' }, one: { type: 'string' }, 'outer-lr': { type: 'string' }, 'outer-momentum': { type: 'string' }, 'lease-ms': { type: 'string', default: '120000' }, curve: { type: 'boolean', default: false },
} });
const codecs = String(values.codecs).split(',');
for (const x of codecs) if (!['none', 'fp16', 'int8', 'sparse'].includes(x)) throw new Error(`bench:comm: --codecs: unknown codec '${x}' (none, fp16, int8, sparse)`);
const outerLr = values['outer-lr'] === undefined ? undefined : Number(values['outer-lr']);
const outerMomentum = values['outer-momentum'] === undefined ? undefined : Number(values['outer-momentum']);
const K = Number(values.workers), b = Number(values['rows-per-step']), H = Number(values['inner-steps']), R = Number(values.rounds);
const link = parseLink(String(values.link));
const rowsBudget = K * b * H * R;

interface Run { mode: string; compress: string; innerSteps: number; bytesIn: number; bytesOut: number; tokens: number; bytesPerToken: number; evalLoss: number; wallSeconds: number; steps: number; curve: Array<{ tokens: number; evalLoss: number; wallSeconds: number }> }

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
  const snaps: Array<{ tokens: number; params: Float32Array; wallSeconds: number }> = [];
  const every = sync ? H : 1;
  let mark = every;
  while (!c.trainer.finished) {
    await new Promise((r) => setTimeout(r, 20));
    if (values.curve && c.trainer.step >= mark && !c.trainer.finished) {
      snaps.push({ tokens: c.trainer.tokensTrained, params: new Float32Array(c.trainer.params), wallSeconds: (Date.now() - t0) / 1000 });
      mark += every;
    }
  }
  const wallSeconds = (Date.now() - t0) / 1000;
  const status = c.ctx.status();
  const ev = new Evaluator(c.trainer.model, c.trainer.dataset, 64);
  const curve: Run['curve'] = [];
  for (const x of snaps) curve.push({ tokens: x.tokens, evalLoss: (await ev.run(x.params)).loss, wallSeconds: x.wallSeconds });
  const evalLoss = (await ev.run(c.trainer.params)).loss;
  ev.dispose();
  curve.push({ tokens: status.tokensTrained, evalLoss, wallSeconds });
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
  if (values.curve) console.log(`  curve (tokens: eval loss @ wall s) ${r.curve.map((p) => `${p.tokens}: ${p.evalLoss.toFixed(4)} @ ${p.wallSeconds.toFixed(1)}`).join(', ')}`);
}
const [s, ...d] = runs;
/** Wall seconds at which `r` first reached `loss` on its curve (null: never). */
const wallAt = (r: Run, loss: number) => r.curve.find((p) => p.evalLoss <= loss)?.wallSeconds ?? null;
const toLoss = d.map((r) => {
  const target = Math.max(s.evalLoss, r.evalLoss);
  const a = wallAt(s, target), b = wallAt(r, target);
  return { compress: r.compress, loss: target, syncSeconds: a, dilocoSeconds: b, ratio: a !== null && b ? a / b : null };
});
if (values.curve) for (const x of toLoss) console.log(`wall to eval loss ${x.loss.toFixed(4)}: sync ${x.syncSeconds?.toFixed(1)} s, diloco ${x.compress} ${x.dilocoSeconds?.toFixed(1)} s: ${x.ratio?.toFixed(2)}x`);
const out = {
  preset: 'tiny', tokens: s.tokens, link: String(values.link),
  sync: { bytesPerToken: s.bytesPerToken, evalLoss: s.evalLoss, wallSeconds: s.wallSeconds, ...(values.curve ? { curve: s.curve } : {}) },
  diloco: d.map((r, i) => ({ compress: r.compress, innerSteps: r.innerSteps, bytesPerToken: r.bytesPerToken, evalLoss: r.evalLoss, wallSeconds: r.wallSeconds, ...(values.curve ? { curve: r.curve, wallToLoss: toLoss[i] } : {}) })),
  bestBytesRatio: Math.max(...d.map((r) => s.bytesPerToken / r.bytesPerToken)),
  bestWallRatio: values.curve ? Math.max(...toLoss.map((x) => x.ratio ?? 0)) : Math.max(...d.map((r) => s.wallSeconds / r.wallSeconds)),
};
console.log(JSON.stringify(out));
process.exit(0);
