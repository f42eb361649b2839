// npx tsx bench/diloco-sim.ts — DiLoCo rounds without sockets, links or verification: the same
// inner steps (shared/diloco/inner.ts runRound + HostInnerEngine, CPU backend), codecs, error
// feedback and outer step as a --mode diloco run, driven in one loop, to compare outer-step
// variants (sparse aggregation, error-feedback decay, top-k, warm-up) quickly on held-out loss.
// Not a substitute for npm run bench:comm (which measures bytes at the sockets and wall time on
// the paced link); it measures loss only. Workers keep their AdamW moments between rounds (as
// real workers do, minus the 10% re-computed rounds that restart them).
//
//   npx tsx bench/diloco-sim.ts [--workers 2] [--rows-per-step 4] [--inner-steps 50] [--rounds 5]
//     [--codec sparse|int8|none] [--topk 64] [--ef-decay 1] [--aggregate mean|sum|cover]
//     [--outer-lr 1] [--outer-momentum 0] [--warmup-rounds 0] [--dense-last 0] [--sync] [--lr 3e-3] [--answers F] [--seed 1]
//     [--round-warmup H1,H2,..] [--outer-lr-end X] [--outer-momentum-end X]
// --round-warmup: the H of the first rounds; rounds go on until R * H inner steps per worker (equal
// tokens). --outer-lr-end / --outer-momentum-end: linear from the start value at round 0 to X at the
// last round (the coordinator's options). --answers: the built-in task's answer format (default the
// coordinator's; the figures of docs/diloco.md's loss tables up to 2026-12-02 ran 'plain').
// --aggregate cover: per coordinate, the token-weighted mean over the workers that sent it
// (a coordinate only one worker picked is not diluted by the others' zeros).
// --warmup-rounds N: the first N rounds send int8 (dense) deltas, the rest --codec.
// --dense-last N: the last N rounds send int8 too (sim only, not a coordinator option): with
// --codec sparse the worker's error feedback goes out with them (what top-k left behind).
// A diloco run also prints an estimate of its wire bytes per token (est B/token: the packed
// deltas up, the outer step down (sparse rounds: the smaller of sparsesum and sparse32, the
// coordinator's choice), one fp32 weights download per worker, the rows' data (9 B per position +
// 4)) and of sync fp32's at the same rows (8 B/param per worker-step + the same data), and their
// ratio; headers are not counted (within ~1% of bench:comm's measured ratio: 251x vs 248x, 457x vs 457x).
// --sync: the synchronous baseline instead (AdamW on the mean gradient of K x rows-per-step rows
// per step, the coordinator's schedule), evaluated at the same token marks.

import { parseArgs } from 'node:util';
import { validateConfig } from '../coordinator/config.ts';
import { Evaluator } from '../coordinator/train/evaluate.ts';
import { Trainer } from '../coordinator/train/trainer.ts';
import { RoundTrainer } from '../coordinator/train/round-trainer.ts';
import { buildMicroBatch, loadDataset } from '../shared/data/index.ts';
import { decode, encode, packedBytes, sparseSum, DEFAULT_CODEC_PARAMS, type CodecName, type PackedVector } from '../shared/diloco/codec.ts';
import { HostInnerEngine, runRound } from '../shared/diloco/inner.ts';
import { presetConfig } from '../shared/model/config.ts';
import { createCpuBackend } from '../shared/model/cpu-backend.ts';
import { buildParameterTable } from '../shared/model/parameters.ts';
import { AdamW, clipGradNorm, lrAt } from '../shared/optim/index.ts';

const { values: v } = parseArgs({ options: {
  workers: { type: 'string', default: '2' }, 'rows-per-step': { type: 'string', default: '4' }, 'inner-steps': { type: 'string', default: '50' },
  rounds: { type: 'string', default: '5' }, codec: { type: 'string', default: 'sparse' }, topk: { type: 'string', default: '64' },
  'ef-decay': { type: 'string', default: '1' }, aggregate: { type: 'string', default: 'mean' }, 'outer-lr': { type: 'string' },
  'outer-momentum': { type: 'string' }, 'warmup-rounds': { type: 'string', default: '0' }, 'dense-last': { type: 'string', default: '0' }, sync: { type: 'boolean', default: false },
  answers: { type: 'string' }, seed: { type: 'string', default: '1' }, 'round-warmup': { type: 'string', default: '' }, 'outer-lr-end': { type: 'string' }, 'outer-momentum-end': { type: 'string' }, lr: { type: 'string', default: '3e-3' },
} });
const K = Number(v.workers), b = Number(v['rows-per-step']), H = Number(v['inner-steps']), R = Number(v.rounds);
const codec = v.codec as CodecName;
const params = { ...DEFAULT_CODEC_PARAMS, topk: Number(v.topk) };
const beta = Number(v['ef-decay']);
const warm = Number(v['warmup-rounds']);
const denseLast = Number(v['dense-last']);
const sparse = codec === 'sparse';
// --round-warmup 5,10,25: the H of the first rounds (then --inner-steps); rounds go on until the
// run has taken R * H inner steps per worker (equal tokens), the last one possibly shorter.
const ramp = String(v['round-warmup']).split(',').filter((x) => x !== '').map(Number);
const budget = R * H;
const roundH: number[] = [];
for (let used = 0; used < budget; ) {
  const h = Math.min(ramp[roundH.length] ?? H, budget - used);
  roundH.push(h);
  used += h;
}
const cfg = validateConfig({
  preset: 'tiny', runDir: '/tmp/diloco-sim', ...(v.answers === undefined ? {} : { answers: v.answers as 'plain' }), mode: v.sync ? 'sync' : 'diloco', compress: v.sync ? 'none' : codec === 'sparse' ? 'sparse' : codec as 'int8', seed: Number(v.seed), lr: Number(v.lr), warmupSteps: 10,
  maxMicroBatch: b, globalBatch: K * b, maxSteps: v.sync ? R * H : R, decaySteps: 0, innerSteps: H, minWorkers: K,
  outerLr: v['outer-lr'] === undefined ? undefined : Number(v['outer-lr']), outerMomentum: v['outer-momentum'] === undefined ? undefined : Number(v['outer-momentum']),
});
const model = presetConfig('tiny');
// The built-in task in the coordinator's answer format (--answers, as bench:comm's coordinator).
const dataset = loadDataset({ data: cfg.data, T: Math.min(16, model.contextLength), seed: cfg.seed, answers: cfg.answers });
const trainer = new Trainer(cfg, model, dataset);
const rt = new RoundTrainer(trainer, cfg);
const table = buildParameterTable(model);
const ev = new Evaluator(model, dataset, 64);
const P = trainer.paramCount;
const theta = new Float32Array(trainer.params);
const curve: string[] = [];
let tokens = 0;
// Estimated wire bytes (typed arrays only, no headers): codec up/down, the one fp32 weights
// download per worker, the task rows (int32 inputs + int32 targets + uint8 mask per position + id).
const bytes = { up: 0, down: 0, weights: 0, data: 0 };
let rowsTaken = 0;
const t0 = Date.now();
const take = (n: number) => { rowsTaken += n; return rt.takeRows(n).map((r) => r.id); };

if (v.sync) {
  const be = createCpuBackend(model);
  const opt = new AdamW(table, { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay });
  const g = new Float32Array(P);
  for (let s = 0; s < R * H; s++) {
    g.fill(0);
    let tok = 0;
    const parts = [];
    for (let w = 0; w < K; w++) {
      await be.setParams(theta);
      const r = await be.forwardBackward(buildMicroBatch(dataset, take(b)));
      parts.push(r);
      tok += r.tokens;
    }
    for (const r of parts) for (let i = 0; i < P; i++) g[i] += (r.grads[i] * r.tokens) / tok;
    if (cfg.gradClip > 0) clipGradNorm(g, cfg.gradClip);
    opt.step(theta, g, lrAt(s, trainer.schedule));
    tokens += tok;
    if ((s + 1) % H === 0) curve.push(`${tokens}: ${(await ev.run(theta)).loss.toFixed(4)}`);
  }
} else {
  const hyper = { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weightDecay: cfg.weightDecay, gradClip: cfg.gradClip };
  const workers = Array.from({ length: K }, () => ({ engine: new HostInnerEngine(createCpuBackend(model), table), ef: new Float32Array(P) }));
  const buf = new Float32Array(P);
  const outer = { lr: cfg.outerLr ?? (sparse ? 1 : 0.7), mu: cfg.outerMomentum ?? (sparse ? 0 : 0.9) };
  let pos = 0;
  const lerp = (a: number, z: string | undefined, round: number) => (z === undefined || roundH.length < 2 ? a : a + ((Number(z) - a) * round) / (roundH.length - 1));
  for (let round = 0; round < roundH.length; round++) {
    const Hr = roundH[round];
    const lrs = Array.from({ length: Hr }, (_, j) => lrAt(pos + j, rt.innerSchedule));
    pos += Hr;
    const olr = lerp(outer.lr, v['outer-lr-end'], round), omu = lerp(outer.mu, v['outer-momentum-end'], round);
    const c: CodecName = round < warm || round >= roundH.length - denseLast ? 'int8' : codec;
    const sent: Array<{ d: Float32Array; tokens: number; p: PackedVector }> = [];
    for (const w of workers) {
      const bt = buildMicroBatch(dataset, take(Hr * b));
      const r = await runRound(w.engine, theta, { B: b, T: bt.T, inputs: bt.inputs, targets: bt.targets, mask: bt.mask }, { ...hyper, lrs });
      let d: Float32Array;
      let p: PackedVector;
      if (c === 'sparse' || (sparse && c === 'int8')) {
        // Error feedback: e = beta e + delta; send C(e); e -= C(e).
        for (let i = 0; i < P; i++) w.ef[i] = beta * w.ef[i] + r.delta[i];
        p = encode(w.ef, c, params);
        d = decode(p);
        for (let i = 0; i < P; i++) w.ef[i] -= d[i];
      } else d = decode((p = encode(r.delta, c, params)));
      bytes.up += packedBytes(p);
      sent.push({ d, tokens: r.tokens, p });
      tokens += r.tokens;
    }
    const tot = sent.reduce((a, x) => a + x.tokens, 0);
    const g = new Float64Array(P);
    for (let i = 0; i < P; i++) {
      let s = 0, wsum = 0;
      for (const x of sent) {
        s += x.d[i] * x.tokens;
        if (x.d[i] !== 0) wsum += x.tokens;
      }
      g[i] = v.aggregate === 'sum' ? s / (tot / K) : v.aggregate === 'cover' ? (wsum > 0 ? s / wsum : 0) : s / tot;
    }
    {
      // The download per worker: sparse rounds as the smaller of sparsesum / sparse32 (the
      // coordinator's choice), others in the round's codec (int8 for the dense rounds).
      const u = new Float32Array(P);
      for (let i = 0; i < P; i++) u[i] = -olr * g[i];
      let db = packedBytes(encode(u, c === 'sparse' ? 'sparse32' : c, params));
      if (c === 'sparse') db = Math.min(db, packedBytes(sparseSum(sent.map((x) => x.p), sent.map((x) => x.tokens / tot), -olr)));
      bytes.down += db * K;
    }
    for (let i = 0; i < P; i++) {
      const bi = omu * buf[i] + g[i];
      buf[i] = bi;
      theta[i] -= olr * (g[i] + omu * bi);
    }
    curve.push(`${tokens}: ${(await ev.run(theta)).loss.toFixed(4)}`);
  }
}
const final = (await ev.run(theta)).loss;
const T = Math.min(16, model.contextLength);
bytes.data = rowsTaken * (9 * T + 4);
let bytesNote = '';
if (!v.sync) {
  bytes.weights = 4 * P * K;
  const total = bytes.up + bytes.down + bytes.weights + bytes.data;
  // sync fp32 at the same rows: 4 B/param up + 4 B/param down per worker-step, plus the same data.
  const syncTotal = 8 * P * K * R * H + bytes.data;
  const bpt = total / tokens, sbpt = syncTotal / tokens;
  bytesNote = ` | est B/token ${bpt.toFixed(1)} (up ${(bytes.up / tokens).toFixed(1)} down ${(bytes.down / tokens).toFixed(1)} weights ${(bytes.weights / tokens).toFixed(1)} data ${(bytes.data / tokens).toFixed(1)}) sync fp32 ${sbpt.toFixed(0)} ratio ${(sbpt / bpt).toFixed(0)}x`;
}
console.log(`${process.argv.slice(2).join(' ')} | tokens ${tokens} eval ${final.toFixed(4)}${bytesNote} | ${((Date.now() - t0) / 1000).toFixed(0)} s | ${curve.join(', ')}`);
process.exit(0);
