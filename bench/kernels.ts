// `npm run bench:kernels`: our WebGPU kernels against TensorFlow.js's WebGPU backend (and
// @jax-js/jax when it runs), on the same adapter in one Node process. Not a test: it prints
// figures. Table for humans first, and LAST one JSON line:
//   {"adapter", "software", "matmul":[{m,n,k,oursGflops,tfjsGflops,ratio,...}], "step":{oursMs,tfjsMs,ratio,...},
//    "dispatchesPerStep", "jax"}
// Timing discipline (timing.ts): warm-up, then N iterations ending with one read-back, N from a
// time budget, identical for every peer. See docs/benchmarks.md for how to read the ratios.

import { parseBenchArgs, BENCH_HELP, type BenchOptions } from './args.ts';
import { openBenchGpu } from './node-webgpu.ts';
import { openTfjs, tfjsMatmul, type Tf } from './tfjs-peer.ts';
import { openJax, jaxMatmul, type JaxPeer } from './jax-peer.ts';
import { oursMatmul, oursBackend } from './ours.ts';
import { matmulInputs, firstAgrees, type MatmulSubject } from './inputs.ts';
import { squareShapes, gptShapes, matmulFlops, type MatmulShape } from './shapes.ts';
import { gflops, measure, type Subject, type TimingBudget } from './timing.ts';
import { dispatchCount, installDispatchCounter } from './dispatch-count.ts';
import { table, fmt, ratio, round } from './report.ts';
import { runStep, type StepFigures } from './step.ts';
import { presetConfig } from '../shared/model/config.ts';
import { isAppError } from '../shared/errors.ts';

type Check = 'ok' | 'MISMATCH';

interface MatmulRow {
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
  /** Each peer's C[0] vs float64 on the same inputs: a wrong (or lazy) kernel must not look fast. */
  check: Record<string, Check>;
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
    const x = matmulInputs(s);
    const flops = matmulFlops(s);
    const subjects: Record<string, MatmulSubject> = {};
    const make = async (peer: string, f: () => MatmulSubject | Promise<MatmulSubject>) => {
      const why = pred.skip(peer, flops);
      if (why) return void notes.push(`${peer} skipped (${why})`);
      try {
        subjects[peer] = await f();
      } catch (e) {
        notes.push(`${peer} failed: ${(e as Error).message.split('\n')[0]}`);
      }
    };
    await make('ours', () => oursMatmul(device, s, x));
    if (tf) await make('tfjs', () => tfjsMatmul(tf, s, x));
    if (jax) await make('jax', () => jaxMatmul(jax, s, x));
    const g: Record<string, number | null> = { ours: null, tfjs: null, jax: null };
    try {
      // Every iteration must encode at least one dispatch: a lazy peer that drops work it was
      // asked for would otherwise look fast while C[0] (from the last iteration) is still right.
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
          notes.push(`${peer} failed: ${t.error}`);
          continue;
        }
        pred.record(peer, flops, t.ms);
        const got = await subjects[peer].first();
        const valueOk = firstAgrees(got, x.first);
        const workOk = dispatched[peer] >= calls[peer];
        check[peer] = valueOk && workOk ? 'ok' : 'MISMATCH';
        if (!valueOk) notes.push(`${peer} C[0]=${got}, float64 reference ${x.first}`);
        if (!workOk) notes.push(`${peer} encoded ${dispatched[peer]} dispatches for ${calls[peer]} matmuls: work skipped`);
        g[peer] = gflops(flops, t.ms);
      }
    } finally {
      for (const sub of Object.values(subjects)) sub.dispose();
    }
    const row: MatmulRow = {
      label: s.label, m: s.m, n: s.n, k: s.k, transA: s.transA, transB: s.transB,
      oursGflops: round(g.ours), tfjsGflops: round(g.tfjs), jaxGflops: round(g.jax),
      ratio: round(ratio(g.ours, g.tfjs)), ratioJax: round(ratio(g.ours, g.jax)), check,
      ...(notes.length ? { note: notes.join('; ') } : {}),
    };
    rows.push(row);
    console.error(`  ${s.label}: ours ${fmt(g.ours)} GFLOP/s, tfjs ${fmt(g.tfjs)}, jax ${fmt(g.jax)}${row.note ? `  (${row.note})` : ''}`);
  }
  return rows;
}

const checkText = (c: Record<string, Check>) =>
  Object.values(c).every((v) => v === 'ok') ? (Object.keys(c).length ? 'ok' : '-') : Object.entries(c).filter(([, v]) => v !== 'ok').map(([k]) => `${k} WRONG`).join(',');

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
  }

  const json = {
    adapter: g.adapterName,
    software: g.info.isSoftware,
    matmul: rows.map((r) => ({
      m: r.m, n: r.n, k: r.k, op: `${r.transA ? 'T' : 'N'}${r.transB ? 'T' : 'N'}`, label: r.label,
      oursGflops: r.oursGflops, tfjsGflops: r.tfjsGflops, ratio: r.ratio,
      ...(jax ? { jaxGflops: r.jaxGflops, ratioJax: r.ratioJax } : {}),
      check: r.check,
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
  };
  console.log(JSON.stringify(json));
  return rows.some((r) => Object.values(r.check).includes('MISMATCH')) || step?.lossesAgree === false ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(isAppError(e) ? e.message : e);
    process.exit(isAppError(e) ? 2 : 1);
  },
);
