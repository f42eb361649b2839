// `npm run bench:kernels`: our WebGPU kernels against TensorFlow.js's WebGPU backend (and
// @jax-js/jax when it runs), on the same adapter in one Node process. Not a test: it prints
// figures. Table for humans first, and LAST one JSON line:
//   {"adapter", "software", "matmul":[{m,n,k,oursGflops,tfjsGflops,ratio,...}], "step":{oursMs,tfjsMs,ratio,...},
//    "dispatchesPerStep", "jax"}
// Timing discipline (timing.ts): warm-up, then N iterations ending with one read-back, N from a
// time budget, identical for every peer. See docs/benchmarks.md for how to read the ratios.
// Exit code: 0 only when our engine and every requested peer ran and were right; 1 when any of
// them failed to start, failed on a shape or step, or computed a wrong value (a figure from a
// broken or absent subject must never look like a pass); 2 for bad options.

import { parseBenchArgs, BENCH_HELP, type BenchOptions } from './args.ts';
import { openBenchGpu } from './node-webgpu.ts';
import { openTfjs, tfjsMatmul, type Tf } from './tfjs-peer.ts';
import { openJax, jaxMatmul, type JaxPeer } from './jax-peer.ts';
import { oursMatmul, oursBackend } from './ours.ts';
import { matmulInputs, wrongProbes, type MatmulSubject } from './inputs.ts';
import { squareShapes, gptShapes, matmulFlops, type MatmulShape } from './shapes.ts';
import { gflops, measure, type Subject, type TimingBudget } from './timing.ts';
import { dispatchCount, installDispatchCounter } from './dispatch-count.ts';
import { table, fmt, ratio, round } from './report.ts';
import { runStep, type StepFigures } from './step.ts';
import { matmulVerdict, stepVerdict, type Check, type Requested } from './verdict.ts';
import { presetConfig } from '../shared/model/config.ts';
import { isAppError } from '../shared/errors.ts';

export interface MatmulRow {
  label: string;
  m: number;
  n: number;
  k: number;
  transA: boolean;
  transB: boolean;
  oursGflops: number | null;
  tfjsGflops: number | null;
  jaxGflops: number | null;
  ratio: number | null;
  ratioJax: number | null;
  /** Each peer's sampled elements of C vs float64 on the same inputs: a wrong (or lazy) kernel
   *  must not look fast. FAILED: the peer threw (building or running); absent: not requested, or
   *  skipped as predicted too slow (listed in `skipped`). */
  check: Record<string, Check>;
  skipped: string[];
  note?: string;
}

/** Skips a peer's shape when its last measured rate predicts one run longer than maxRunMs. */
class Predictor {
  private rate = new Map<string, number>();
  constructor(private readonly maxRunMs: number) {}
  skip(peer: string, flops: number): string | null {
    const r = this.rate.get(peer);
    if (!r) return null;
    const predicted = flops / (r * 1e6);
    return predicted > this.maxRunMs ? `predicted ${predicted.toFixed(0)} ms/run > --max-run-ms ${this.maxRunMs}` : null;
  }
  record(peer: string, flops: number, ms: number): void {
    if (ms > 0) this.rate.set(peer, gflops(flops, ms));
  }
}

async function matmulSection(
  o: BenchOptions,
  device: GPUDevice,
  tf: Tf | null,
  jax: JaxPeer | null,
  budget: TimingBudget,
): Promise<MatmulRow[]> {
  const shapes: MatmulShape[] = [];
  if (o.parts.matmul) shapes.push(...squareShapes(o.sizes));
  if (o.parts.gptShapes) {
    const c = presetConfig(o.preset);
    shapes.push(...gptShapes(c, o.B, o.T).map((s) => ({ ...s, label: `${o.preset} ${s.label}` })));
  }
  const pred = new Predictor(o.maxRunMs);
  const rows: MatmulRow[] = [];
  installDispatchCounter();
  for (const s of shapes) {
    const notes: string[] = [];
    const check: Record<string, Check> = {};
    const skipped: string[] = [];
    const x = matmulInputs(s, o.checkSeed);
    const flops = matmulFlops(s);
    const subjects: Record<string, MatmulSubject> = {};
    const make = async (peer: string, f: () => MatmulSubject | Promise<MatmulSubject>) => {
      const why = pred.skip(peer, flops);
      if (why) {
        skipped.push(peer);
        return void notes.push(`${peer} skipped (${why})`);
      }
      try {
        subjects[peer] = await f();
      } catch (e) {
        check[peer] = 'FAILED';
        notes.push(`${peer} failed: ${(e as Error).message.split('\n')[0]}`);
      }
    };
    await make('ours', () => oursMatmul(device, s, x));
    if (tf) await make('tfjs', () => tfjsMatmul(tf, s, x));
    if (jax) await make('jax', () => jaxMatmul(jax, s, x));
    const g: Record<string, number | null> = { ours: null, tfjs: null, jax: null };
    try {
      // Every iteration must encode at least one dispatch: a lazy peer that drops work it was
      // asked for would otherwise look fast while C (from the last iteration) is still right.
      // Counted from a sample's first enqueue to the end of its sync (peers run one at a time, and
      // a peer's asynchronous submits land between its own enqueues, so a span, not windows).
      const calls: Record<string, number> = {};
      const dispatched: Record<string, number> = {};
      const guarded: Record<string, Subject> = {};
      for (const [peer, sub] of Object.entries(subjects)) {
        calls[peer] = 0;
        dispatched[peer] = 0;
        let spanStart: number | null = null;
        guarded[peer] = {
          enqueue: async () => {
            calls[peer]++;
            spanStart ??= dispatchCount();
            await sub.enqueue();
          },
          sync: async () => {
            await sub.sync();
            if (spanStart !== null) dispatched[peer] += dispatchCount() - spanStart;
            spanStart = null;
          },
        };
      }
      const timed = await measure(guarded, budget);
      for (const [peer, t] of Object.entries(timed)) {
        if ('error' in t) {
          check[peer] = 'FAILED';
          notes.push(`${peer} failed: ${t.error}`);
          continue;
        }
        pred.record(peer, flops, t.ms);
        let wrong: string[];
        try {
          wrong = wrongProbes(s, x.probes, await subjects[peer].read(x.probes.map((p) => p.index)));
        } catch (e) {
          check[peer] = 'FAILED';
          notes.push(`${peer} read-back failed: ${(e as Error).message.split('\n')[0]}`);
          continue;
        }
        const workOk = dispatched[peer] >= calls[peer];
        check[peer] = wrong.length === 0 && workOk ? 'ok' : 'MISMATCH';
        if (wrong.length) notes.push(`${peer} wrong at ${wrong.length}/${x.probes.length} checked elements: ${wrong.slice(0, 3).join('; ')}`);
        if (!workOk) notes.push(`${peer} encoded ${dispatched[peer]} dispatches for ${calls[peer]} matmuls: work skipped`);
        g[peer] = gflops(flops, t.ms);
      }
    } finally {
      for (const sub of Object.values(subjects)) sub.dispose();
    }
    const row: MatmulRow = {
      label: s.label, m: s.m, n: s.n, k: s.k, transA: s.transA, transB: s.transB,
      oursGflops: round(g.ours), tfjsGflops: round(g.tfjs), jaxGflops: round(g.jax),
      ratio: round(ratio(g.ours, g.tfjs)), ratioJax: round(ratio(g.ours, g.jax)), check, skipped,
      ...(notes.length ? { note: notes.join('; ') } : {}),
    };
    rows.push(row);
    console.error(`  ${s.label}: ours ${fmt(g.ours)} GFLOP/s, tfjs ${fmt(g.tfjs)}, jax ${fmt(g.jax)}${row.note ? `  (${row.note})` : ''}`);
  }
  return rows;
}

const checkText = (c: Record<string, Check>) =>
  Object.values(c).every((v) => v === 'ok') ? (Object.keys(c).length ? 'ok' : '-') : Object.entries(c).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k} ${v === 'FAILED' ? 'FAILED' : 'WRONG'}`).join(',');


async function main(): Promise<number> {
  const parsed = parseBenchArgs(process.argv.slice(2));
  if (parsed === 'help') {
    console.log(BENCH_HELP);
    return 0;
  }
  const o = parsed;
  const cfg = presetConfig(o.preset);
  if (o.T > cfg.contextLength) {
    console.error(`bench:kernels: --seq ${o.T} > contextLength ${cfg.contextLength} of ${o.preset}`);
    return 2;
  }
  const budget: TimingBudget = { budgetMs: o.budgetMs, maxIters: o.maxIters, rounds: o.rounds };

  const g = await openBenchGpu();
  console.log(`adapter: ${g.adapterName}${g.info.isSoftware ? '  [SOFTWARE adapter: figures say nothing about a real GPU]' : ''}`);
  // Default micro-batch: 4 x min(contextLength, 128) on a GPU; on a software adapter (~0.1-0.5
  // GFLOP/s) 2 x min(contextLength, 64), so that a default run ends in minutes, not an hour.
  const sw = g.info.isSoftware;
  if (!o.T) o.T = Math.min(cfg.contextLength, sw ? 64 : 128);
  if (!o.B) o.B = sw || o.preset === 'tiny' ? 2 : 4;
  console.log(`micro-batch for GPT shapes and step: ${o.preset} B=${o.B} T=${o.T}${sw ? ' (software-adapter default; --batch/--seq to change)' : ''}`);
  console.log(`output elements checked per matmul: C[0], the last and 32 sampled (--check-seed ${o.checkSeed})`);
  console.log(`limits: maxStorageBufferBindingSize ${g.device.limits.maxStorageBufferBindingSize}, workgroup storage ${g.device.limits.maxComputeWorkgroupStorageSize} B`);

  let tf: Tf | null = null;
  let tfError: string | null = null;
  if (o.peers.tfjs) {
    try {
      tf = await openTfjs(g.device, g.adapter);
    } catch (e) {
      tfError = (e as Error).message;
      console.log(`tfjs: not available: ${tfError}`);
    }
  }
  let jax: JaxPeer | null = null;
  let jaxStatus = 'not run (--no-jax)';
  if (o.peers.jax) {
    const j = await openJax();
    if ('error' in j) {
      jaxStatus = j.error;
      console.log(`jax-js: ${j.error}`);
    } else {
      jax = j;
      jaxStatus = 'ok (own device on the same adapter)';
    }
  }

  console.error(`matmul (best of ${o.rounds} interleaved samples of ~${o.budgetMs} ms each; progress on stderr):`);
  const rows = await matmulSection(o, g.device, tf, jax, budget);
  console.log('\nmatmul GFLOP/s (ratio = ours / peer, > 1 means we are faster)');
  console.log(table(
    ['shape', 'm', 'n', 'k', 'op', 'ours', 'tfjs', 'ours/tfjs', ...(jax ? ['jax', 'ours/jax'] : []), 'check'],
    rows.map((r) => [
      r.label, String(r.m), String(r.n), String(r.k), `${r.transA ? 'T' : 'N'}${r.transB ? 'T' : 'N'}`,
      fmt(r.oursGflops), fmt(r.tfjsGflops), fmt(r.ratio), ...(jax ? [fmt(r.jaxGflops), fmt(r.ratioJax)] : []), checkText(r.check),
    ]),
  ));
  for (const r of rows) if (r.note) console.log(`  note ${r.label}: ${r.note}`);

  // Which subjects ran, and every reason this run cannot count as a pass (verdict.ts).
  const requested: Requested = { ours: null };
  if (o.peers.tfjs) requested.tfjs = tf ? null : `not available: ${tfError}`;
  if (o.peers.jax) requested.jax = jax ? null : `not available: ${jaxStatus}`;
  const { ran, failures } = matmulVerdict(rows, requested);

  let step: StepFigures | null = null;
  if (o.parts.step) {
    console.error(`step: ${o.preset} B=${o.B} T=${o.T}`);
    step = await runStep({ config: cfg, B: o.B, T: o.T, budget, tf, jax, ours: () => oursBackend(g.device, cfg, o.B, o.T) });
    console.log(`\nfull training step (forward + backward, ${o.preset}, B=${o.B}, T=${o.T}, gradient read back)`);
    const d = (n: string) => (n in step!.counted ? String(step!.counted[n]) : '-');
    console.log(table(['peer', 'ms/step', 'loss', 'tokens/s', 'dispatches'], [
      ['ours', fmt(step.oursMs), fmt(step.oursLoss, 5), fmt(step.oursMs ? (step.tokens / step.oursMs) * 1000 : null), d('ours')],
      ['tfjs', fmt(step.tfjsMs), fmt(step.tfjsLoss, 5), fmt(step.tfjsMs ? (step.tokens / step.tfjsMs) * 1000 : null), d('tfjs')],
      ...(jax ? [['jax', fmt(step.jaxMs), fmt(step.jaxLoss, 5), fmt(step.jaxMs ? (step.tokens / step.jaxMs) * 1000 : null), d('jax')]] : []),
    ]));
    console.log(`\ncpu reference loss ${fmt(step.cpuLoss, 5)}; ours/tfjs speed ratio: ${fmt(step.ratio)}${jax ? `   ours/jax: ${fmt(step.ratioJax)}` : ''}   losses agree: ${step.lossesAgree ?? '-'}   dispatches per step: ${step.dispatchesPerStep ?? '-'}`);
    for (const n of step.notes) console.log(`  note: ${n}`);
    stepVerdict(step, requested, ran, failures);
  }

  console.log('\nsubjects:');
  for (const [peer, what] of Object.entries(ran)) console.log(`  ${peer}: ${what}`);
  console.log(failures.length ? `FAILED: ${failures.join('; ')}` : 'all requested subjects ran and agree with the float64 / CPU references');

  const json = {
    adapter: g.adapterName,
    software: g.info.isSoftware,
    matmul: rows.map((r) => ({
      m: r.m, n: r.n, k: r.k, op: `${r.transA ? 'T' : 'N'}${r.transB ? 'T' : 'N'}`, label: r.label,
      oursGflops: r.oursGflops, tfjsGflops: r.tfjsGflops, ratio: r.ratio,
      ...(jax ? { jaxGflops: r.jaxGflops, ratioJax: r.ratioJax } : {}),
      check: r.check, skipped: r.skipped,
    })),
    step: step
      ? {
          preset: o.preset, B: o.B, T: o.T,
          oursMs: round(step.oursMs, 2), tfjsMs: round(step.tfjsMs, 2), ratio: round(step.ratio),
          oursLoss: step.oursLoss, tfjsLoss: step.tfjsLoss, lossesAgree: step.lossesAgree,
          ...(jax ? { jaxMs: round(step.jaxMs, 2), ratioJax: round(step.ratioJax), jaxLoss: step.jaxLoss } : {}),
        }
      : null,
    dispatchesPerStep: step?.dispatchesPerStep ?? null,
    dispatchesCounted: step?.counted ?? null,
    tfjs: tf ? 'ok (our device)' : (tfError ?? 'not run (--no-tfjs)'),
    jax: jaxStatus,
    checkSeed: o.checkSeed,
    ran,
    failures,
  };
  console.log(JSON.stringify(json));
  return failures.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(isAppError(e) ? e.message : e);
    process.exit(isAppError(e) ? 2 : 1);
  },
);
