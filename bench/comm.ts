// npm run bench:comm — sync vs diloco (int8, sparse) on the same data, the same token budget and
// the same workers, each worker on an emulated home link (default 10 Mbit/s up, 50 Mbit/s down:
// worker-web/client/link.ts, the Node worker's --link). Each run (one configuration) is a child
// process holding the coordinator (CPU, tiny preset, loopback); each worker is a process of its own
// (`npm run worker -- --backend cpu --link UP/DOWN`, as volunteers run on machines of their own;
// --in-process: WorkerClients in the coordinator's process, one thread for everything, as measured
// before 2026-12-02). Bytes are counted at the coordinator's sockets (/api/status wire). Prints a
// table and, as the last line, one JSON object (issue 13).
//
// What the wall clock counts: from the moment every worker has connected (process starts are not
// counted) until the coordinator's last step/round is done: the workers' compute, their paced
// links, the coordinator's aggregation and optimizer, its verification (sync: sampled gradients
// re-computed on its verification threads; diloco: the loss score of every delta and the sampled
// rounds' CPU re-computation, --verify-rate 0.1). Not counted: the held-out evaluations of --curve
// and of the final loss (the weights are copied at each curve point and evaluated after the run)
// and the shutdown.
//
//   npx tsx bench/comm.ts [--workers 2] [--rows-per-step 4] [--inner-steps 50] [--rounds 2] [--link 10mbit/50mbit]
//                         [--codecs int8,sparse] [--outer-lr X] [--outer-momentum X] [--lease-ms 120000] [--curve]
//                         [--sync-link paced|none] [--wall-rows-per-step 1] [--dense-rounds N] [--sparse-topk K] [--in-process]
//                         [--round-warmup H1,H2,..] [--outer-lr-end X] [--outer-momentum-end X]
// Outer lr / momentum default to the coordinator's (0.7 / 0.9; sparse: 1 / 0, SparseLoCo).
// --curve: the held-out loss (64 samples) of the coordinator's weights at every round boundary
// (every H sync steps: the same tokens) with the wall time it was reached, printed per run and
// kept in the JSON ("curve"). With it, wallToLoss compares the wall time each run needed to reach
// the same loss: the worse of the two final losses (sync's and the diloco run's), first point at or
// below it (sync's points every H/10 steps, diloco's every round; without --curve: total wall times).
//
// Two regimes of wall time. Sync's step costs the workers' compute plus the upload of a full fp32
// gradient (0.4 MB for tiny: 0.32 s at 10 Mbit/s); DiLoCo removes the upload, not the compute, so
// the ratio is bounded by (link + compute) / compute. On this CPU bench the compute of 4 rows per
// step is of the order of the link time (CPU-bound regime: the main runs); a GPU worker computes a
// step in a small fraction of its gradient's upload (GPT-2 small: ~1 s of GPU work against ~400 s
// of upload at 10 Mbit/s, issue 13). --wall-rows-per-step N (default 1; 0: off) therefore runs a
// second paced pair (sync and each codec, same H and rounds) at N rows per step, where the link
// dominates sync's wall time (linkShare: the upload seconds of a worker's link over the run's wall
// time, printed for every run; with child workers: the mean worker's, from the bytes the coordinator
// received). bestWallRatio in the JSON line is that link-bound regime's best
// ratio (the one that stands for GPU workers); cpuBoundWallRatio the main runs' (null when sync
// ran unpaced). --sync-link none runs the main sync run without pacing (its loss does not depend on
// the link): for long equal-token loss comparisons; its wall time is then not compared.
// The learning-rate schedule spans the run in both modes (decaySteps 0: sync over its steps,
// diloco over rounds * H inner steps), so both train at the same rate per token; with the
// coordinator's default (1500) a 1000-step sync run decayed to a quarter of its peak while the
// diloco inner steps stayed at the peak (75 000 inner steps): sync's late loss drop was the decay.
// --dense-rounds N, --sparse-topk K: passed to the sparse runs' coordinator (docs/diloco.md).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startCoordinator } from '../coordinator/coordinator.ts';
import { Evaluator } from '../coordinator/train/evaluate.ts';
import { createCpuHost } from '../worker-web/client/cpu-host.ts';
import { paceSocket, parseLink } from '../worker-web/client/link.ts';
import { WorkerClient } from '../worker-web/client/worker-client.ts';

const { values } = parseArgs({ options: {
  workers: { type: 'string', default: '2' }, 'rows-per-step': { type: 'string', default: '4' }, 'inner-steps': { type: 'string', default: '50' },
  rounds: { type: 'string', default: '2' }, link: { type: 'string', default: '10mbit/50mbit' },
  codecs: { type: 'string', default: 'int8,sparse' }, one: { type: 'string' }, 'outer-lr': { type: 'string' }, 'outer-momentum': { type: 'string' }, 'lease-ms': { type: 'string', default: '120000' }, curve: { type: 'boolean', default: false },
  'sync-link': { type: 'string', default: 'paced' }, 'wall-rows-per-step': { type: 'string', default: '1' }, 'dense-rounds': { type: 'string' }, 'sparse-topk': { type: 'string' }, 'in-process': { type: 'boolean', default: false },
  'round-warmup': { type: 'string' }, 'outer-lr-end': { type: 'string' }, 'outer-momentum-end': { type: 'string' },
} });
const codecs = String(values.codecs).split(',');
for (const x of codecs) if (!['none', 'fp16', 'int8', 'sparse'].includes(x)) throw new Error(`bench:comm: --codecs: unknown codec '${x}' (none, fp16, int8, sparse)`);
if (!['paced', 'none'].includes(String(values['sync-link']))) throw new Error(`bench:comm: --sync-link must be paced or none, got '${values['sync-link']}'`);
const outerLr = values['outer-lr'] === undefined ? undefined : Number(values['outer-lr']);
const outerMomentum = values['outer-momentum'] === undefined ? undefined : Number(values['outer-momentum']);
const outerLrEnd = values['outer-lr-end'] === undefined ? undefined : Number(values['outer-lr-end']);
const outerMomentumEnd = values['outer-momentum-end'] === undefined ? undefined : Number(values['outer-momentum-end']);
const denseRounds = values['dense-rounds'] === undefined ? undefined : Number(values['dense-rounds']);
const sparseTopk = values['sparse-topk'] === undefined ? undefined : Number(values['sparse-topk']);
const K = Number(values.workers), mainB = Number(values['rows-per-step']), H = Number(values['inner-steps']), R = Number(values.rounds);
const wallB = Number(values['wall-rows-per-step']);
if (!(Number.isInteger(wallB) && wallB >= 0)) throw new Error(`bench:comm: --wall-rows-per-step must be an integer >= 0, got '${values['wall-rows-per-step']}'`);
const link = parseLink(String(values.link));
// --round-warmup H1,H2,..: the diloco runs' first rounds (docs/diloco.md); they run as many rounds as
// cover the same R * H inner steps per worker (equal tokens), so the list must sum to a multiple of H.
const roundWarmup = values['round-warmup'];
const ramp = roundWarmup === undefined ? [] : roundWarmup.split(',').map(Number);
const rampSteps = ramp.reduce((a, x) => a + x, 0);
if (rampSteps % H !== 0 || rampSteps > R * H) throw new Error(`bench:comm: --round-warmup must sum to a multiple of --inner-steps, at most rounds x H (got ${rampSteps})`);
const dilocoRounds = ramp.length + R - rampSteps / H;
const inProcess = values['in-process'] === true;
const WORKER_MAIN = fileURLToPath(new URL('../worker-web/node/main.ts', import.meta.url));

interface Run {
  mode: string; compress: string; innerSteps: number; rowsPerStep: number; paced: boolean; bytesIn: number; bytesOut: number; tokens: number; bytesPerToken: number;
  evalLoss: number; wallSeconds: number; steps: number;
  /** Upload seconds of the busiest worker's link (bytes sent * 8 / rate) over the run's wall time. */
  linkShare: number | null;
  curve: Array<{ tokens: number; evalLoss: number; wallSeconds: number }>;
  /** The curve's points and, for sync, one every H/10 steps (what wallToLoss reads). */
  fine: Array<{ tokens: number; evalLoss: number; wallSeconds: number }>;
  /** CPU seconds of the coordinator's process while the clock ran (with --in-process: the workers' too). */
  coordinatorCpuSeconds: number;
  /** CPU seconds of the mean child worker process (null: --in-process). */
  workerCpuSeconds: number | null;
}

/** User + system CPU seconds of process `pid` so far (/proc/PID/stat; null where there is none). */
function procCpuSeconds(pid: number | undefined): number | null {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(x[11]) + Number(x[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return null;
  }
}

async function run(mode: 'sync' | 'diloco', compress: string, b: number, paced: boolean): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-comm-'));
  const sync = mode === 'sync';
  const rowsBudget = K * b * H * R;
  const c = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
    adminToken: 'bench-comm-token', mode, compress: compress as 'none', outerLr, outerMomentum, seed: 1, lr: 3e-3, warmupSteps: sync ? 10 : 10, maxMicroBatch: b,
    globalBatch: K * b, maxSteps: sync ? rowsBudget / (K * b) : dilocoRounds, decaySteps: 0, innerSteps: H, minWorkers: K, quorum: K,
    leaseMs: Number(values['lease-ms']), heartbeatMs: 2_000, deadAfterMs: 60_000, maxShare: 1,
    ...(compress !== 'sparse' || denseRounds === undefined ? {} : { denseRounds }),
    ...(sync || roundWarmup === undefined ? {} : { roundWarmup }),
    ...(sync ? {} : { outerLrEnd, outerMomentumEnd }),
    ...(compress !== 'sparse' || sparseTopk === undefined ? {} : { sparseTopk }),
  });
  // Workers: by default each in a child process of its own (`npm run worker -- --backend cpu
  // --link UP/DOWN`), as volunteers run on machines of their own; --in-process: in this process
  // (one thread for the coordinator and every worker, as before).
  const links: Array<{ up: { bytes: number } }> = [];
  const workers = inProcess ? Array.from({ length: K }, (_, i) => new WorkerClient({
    url: c.url, name: `w${i}`, host: createCpuHost({ description: 'bench cpu', probedBytes: 256 * 2 ** 20 }), seed: i + 1,
    log: () => undefined, wrapSocket: paced ? (s) => void links.push(paceSocket(s, link)) : undefined,
  })) : [];
  const children = inProcess ? [] : Array.from({ length: K }, (_, i) => spawn(process.execPath,
    [...process.execArgv, WORKER_MAIN, '--url', c.url, '--backend', 'cpu', '--name', `w${i}`, '--seed', String(i + 1), '--quiet', ...(paced ? ['--link', String(values.link)] : [])],
    { stdio: ['ignore', 'ignore', 'inherit'] }));
  for (const w of workers) await w.start();
  // The clock starts when every worker has connected (a child's process start is not training).
  while (c.hub.workers.byId.size < K) await new Promise((r) => setTimeout(r, 10));
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const workerCpu0 = children.map((p) => procCpuSeconds(p.pid));
  // Curve points: copies of the coordinator's weights between steps (the poll sees the weights
  // after step `mark`), evaluated after the run (evaluating during it stalled sync steps).
  // Sync is also snapshotted every H/10 steps (`fine`, for wallToLoss only): with points every H
  // steps only, sync's time to a loss it passed between two points was counted as the later
  // point's (up to H steps late: 36 s of 148 s in one run), which flattered diloco.
  const snaps: Array<{ tokens: number; params: Float32Array; wallSeconds: number; onCurve: boolean }> = [];
  const every = sync ? H : 1;
  const fineEvery = sync ? Math.max(1, Math.floor(H / 10)) : 1;
  let mark = every, fineMark = fineEvery;
  let lastStep = -1, lastMove = Date.now();
  while (!c.trainer.finished) {
    await new Promise((r) => setTimeout(r, 20));
    if (c.trainer.step !== lastStep) [lastStep, lastMove] = [c.trainer.step, Date.now()];
    else if (Date.now() - lastMove > 60_000) {
      // A run that stops moving says why (bans, owed rows, the running round) instead of hanging silently.
      const st = c.ctx.status() as unknown as Record<string, unknown>;
      console.error(`bench:comm: ${mode}:${compress} no step for 60 s at step ${lastStep}: ${JSON.stringify({ security: st.security, diloco: st.diloco, workers: st.workers }).slice(0, 3000)}`);
      lastMove = Date.now();
    }
    if (values.curve && c.trainer.step >= fineMark && !c.trainer.finished) {
      const onCurve = c.trainer.step >= mark;
      snaps.push({ tokens: c.trainer.tokensTrained, params: new Float32Array(c.trainer.params), wallSeconds: (Date.now() - t0) / 1000, onCurve });
      while (fineMark <= c.trainer.step) fineMark += fineEvery;
      if (onCurve) while (mark <= c.trainer.step) mark += every;
    }
  }
  const wallSeconds = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // CPU seconds spent while the clock ran: the coordinator's process (user + system) and each
  // child worker's (from /proc, since the clock started), so that
  // the compute behind a wall time can be told from waiting on links and from a loaded machine.
  const coordinatorCpuSeconds = (cpu.user + cpu.system) / 1e6;
  const workerCpu = children.map((p, i) => { const a = procCpuSeconds(p.pid), b = workerCpu0[i]; return a === null || b === null ? null : a - b; });
  const workerCpuSeconds = workerCpu.every((x) => x !== null) && workerCpu.length ? workerCpu.reduce((a, x) => a + x!, 0) / workerCpu.length : null;
  const status = c.ctx.status();
  // In process: the busiest worker's paced uplink; child workers: the mean worker's share of the
  // bytes the coordinator received (their wire is counted at its sockets).
  const upSeconds = inProcess ? Math.max(0, ...links.map((l) => (l.up.bytes * 8) / link.upBps)) : (status.wire!.bytesIn / K) * 8 / link.upBps;
  const ev = new Evaluator(c.trainer.model, c.trainer.dataset, 64);
  const curve: Run['curve'] = [];
  const fine: Run['curve'] = [];
  for (const x of snaps) {
    const p = { tokens: x.tokens, evalLoss: (await ev.run(x.params)).loss, wallSeconds: x.wallSeconds };
    fine.push(p);
    if (x.onCurve) curve.push(p);
  }
  const evalLoss = (await ev.run(c.trainer.params)).loss;
  ev.dispose();
  curve.push({ tokens: status.tokensTrained, evalLoss, wallSeconds });
  fine.push({ tokens: status.tokensTrained, evalLoss, wallSeconds });
  for (const w of workers) await w.stop('bench over');
  await Promise.all(children.map((p) => new Promise((r) => { if (p.exitCode !== null) r(null); else { p.once('exit', r); p.kill('SIGTERM'); } })));
  await c.close();
  rmSync(dir, { recursive: true, force: true });
  const wire = status.wire!;
  return {
    mode, compress, innerSteps: sync ? 1 : H, rowsPerStep: b, paced, bytesIn: wire.bytesIn, bytesOut: wire.bytesOut, tokens: status.tokensTrained,
    bytesPerToken: (wire.bytesIn + wire.bytesOut) / status.tokensTrained, evalLoss, wallSeconds, steps: c.trainer.step,
    linkShare: paced ? upSeconds / wallSeconds : null, curve, fine, coordinatorCpuSeconds, workerCpuSeconds,
  };
}

// Each configuration runs in a child process of its own (a second coordinator + workers in one
// process stalled on a lease until it expired: a fresh process measures each run alone).
// --one mode:codec:rowsPerStep:paced|none
if (values.one) {
  const [m, cmp, rows, pacing] = values.one.split(':');
  console.log(JSON.stringify(await run(m as 'sync' | 'diloco', cmp, Number(rows ?? mainB), pacing !== 'none')));
  process.exit(0);
}

const self = process.argv.slice(1).filter((a) => !a.startsWith('--one'));
function child(m: string, cmp: string, b: number, paced: boolean): Run {
  const text = execFileSync(process.execPath, [...process.execArgv, ...self, '--one', `${m}:${cmp}:${b}:${paced ? 'paced' : 'none'}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  const r = JSON.parse(text.trim().split('\n').at(-1)!) as Run;
  const share = (r.linkShare === null ? 'unpaced' : `link ${(100 * r.linkShare).toFixed(0)}% of wall`)
    + `; cpu: coordinator ${r.coordinatorCpuSeconds.toFixed(1)} s${r.workerCpuSeconds === null ? '' : `, worker ${r.workerCpuSeconds.toFixed(1)} s`}`;
  console.log(`${r.mode.padEnd(6)} ${r.compress.padEnd(6)} H=${String(r.innerSteps).padEnd(3)} B=${r.rowsPerStep} steps ${String(r.steps).padStart(4)}  tokens ${String(r.tokens).padStart(6)}  in ${(r.bytesIn / 1e6).toFixed(2).padStart(8)} MB  out ${(r.bytesOut / 1e6).toFixed(2).padStart(8)} MB  ${r.bytesPerToken.toFixed(1).padStart(9)} B/token  eval loss ${r.evalLoss.toFixed(4)}  wall ${r.wallSeconds.toFixed(1)} s (${share})`);
  if (values.curve) console.log(`  curve (tokens: eval loss @ wall s) ${r.curve.map((p) => `${p.tokens}: ${p.evalLoss.toFixed(4)} @ ${p.wallSeconds.toFixed(1)}`).join(', ')}`);
  return r;
}

/** Wall seconds at which `r` first reached `loss` on its curve (null: never). */
const wallAt = (r: Run, loss: number) => r.fine.find((p) => p.evalLoss <= loss)?.wallSeconds ?? null;
/** Per diloco run: wall time to the worse of the two final losses, sync / diloco (null: sync unpaced). */
function wallRatios(s: Run, d: Run[]) {
  return d.map((r) => {
    if (!s.paced) return { compress: r.compress, loss: null, syncSeconds: null, dilocoSeconds: null, ratio: null };
    if (!values.curve) return { compress: r.compress, loss: null, syncSeconds: s.wallSeconds, dilocoSeconds: r.wallSeconds, ratio: s.wallSeconds / r.wallSeconds };
    const target = Math.max(s.evalLoss, r.evalLoss);
    const a = wallAt(s, target), b = wallAt(r, target);
    return { compress: r.compress, loss: target, syncSeconds: a, dilocoSeconds: b, ratio: a !== null && b ? a / b : null };
  });
}
function printRatios(label: string, xs: ReturnType<typeof wallRatios>): void {
  for (const x of xs) {
    if (x.ratio === null) console.log(`${label}: diloco ${x.compress}: no wall ratio (sync ran unpaced)`);
    else console.log(`${label}: wall${x.loss === null ? '' : ` to eval loss ${x.loss.toFixed(4)}`}: sync ${x.syncSeconds?.toFixed(1)} s, diloco ${x.compress} ${x.dilocoSeconds?.toFixed(1)} s: ${x.ratio.toFixed(2)}x`);
  }
}
const best = (xs: ReturnType<typeof wallRatios>) => (xs.some((x) => x.ratio !== null) ? Math.max(...xs.map((x) => x.ratio ?? 0)) : null);

const syncPaced = values['sync-link'] !== 'none';
console.log(`main runs: ${mainB} rows per step${syncPaced ? '' : ' (sync unpaced: losses and bytes only)'}`);
const s = child('sync', 'none', mainB, syncPaced);
const d = codecs.map((x) => child('diloco', x, mainB, true));
const mainRatios = wallRatios(s, d);
printRatios(`main (${mainB} rows/step)`, mainRatios);
let linkBound: { rowsPerStep: number; sync: Run; diloco: Run[]; ratios: ReturnType<typeof wallRatios> } | null = null;
if (wallB > 0 && (wallB !== mainB || !syncPaced)) {
  console.log(`link-bound wall runs: ${wallB} rows per step, all paced`);
  const ls = child('sync', 'none', wallB, true);
  const ld = codecs.map((x) => child('diloco', x, wallB, true));
  linkBound = { rowsPerStep: wallB, sync: ls, diloco: ld, ratios: wallRatios(ls, ld) };
  printRatios(`link-bound (${wallB} rows/step)`, linkBound.ratios);
}
const brief = (r: Run) => ({ bytesPerToken: r.bytesPerToken, evalLoss: r.evalLoss, wallSeconds: r.wallSeconds, tokens: r.tokens, rowsPerStep: r.rowsPerStep, linkShare: r.linkShare,
  steps: r.steps, bytesIn: r.bytesIn, bytesOut: r.bytesOut, coordinatorCpuSeconds: r.coordinatorCpuSeconds, workerCpuSeconds: r.workerCpuSeconds, ...(values.curve ? { curve: r.curve } : {}) });
const cpuBoundWallRatio = best(mainRatios);
const out = {
  preset: 'tiny', tokens: s.tokens, link: String(values.link),
  sync: { ...brief(s), paced: s.paced },
  diloco: d.map((r, i) => ({ compress: r.compress, innerSteps: r.innerSteps, ...brief(r), wallToLoss: mainRatios[i] })),
  bestBytesRatio: Math.max(...d.map((r) => s.bytesPerToken / r.bytesPerToken)),
  // The link-bound regime stands for GPU workers (see the header); without it, the main runs'.
  bestWallRatio: linkBound ? best(linkBound.ratios) : cpuBoundWallRatio,
  cpuBoundWallRatio,
  ...(linkBound ? { linkBound: { rowsPerStep: linkBound.rowsPerStep, sync: brief(linkBound.sync), diloco: linkBound.diloco.map((r, i) => ({ compress: r.compress, innerSteps: r.innerSteps, ...brief(r), wallToLoss: linkBound!.ratios[i] })) } } : {}),
};
console.log(JSON.stringify(out));
process.exit(0);
