// Reads a coordinator's log (pino JSON lines, as `npm start` writes them) and prints what a run of the
// built-in task did, from the log alone: one JSON line per evaluation (step, minutes since the first
// step, exact match overall and per task) with --curve, then a summary: the first evaluation at which
// each task and the whole split reached 95% and 99%, and the step rate (steps per second from the
// `step` lines' timestamps, evaluation included, since it runs while training goes on).
// Why a script: docs/model.md's per-task table and wall times are read from real logs, not retyped.
//   npx tsx bench/arith/eval-log.ts runs/default/coord.log [--curve] [--from-step N]
import { readFileSync } from 'node:fs';

interface Task { task: string; correct: number; total: number; accuracy: number }
interface Line { time: number; msg?: string; step?: number; accuracy?: number; tasks?: Task[]; evalLoss?: number }

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
if (!file) {
  console.error('usage: npx tsx bench/arith/eval-log.ts COORDINATOR_LOG [--curve] [--from-step N]');
  process.exit(2);
}
const fromIdx = args.indexOf('--from-step');
const fromStep = fromIdx >= 0 ? Number(args[fromIdx + 1]) : 100;
const lines: Line[] = [];
for (const raw of readFileSync(file, 'utf8').split('\n')) {
  if (!raw.startsWith('{')) continue;
  try { lines.push(JSON.parse(raw) as Line); } catch { /* a torn last line */ }
}
const steps = lines.filter((l) => l.msg === 'step' && typeof l.step === 'number');
const evals = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('eval at step') && l.tasks);
if (steps.length === 0) { console.error('no step lines in', file); process.exit(1); }
const t0 = steps[0].time;
const pct = (x: number) => Math.round(x * 1000) / 10;
const first: Record<string, Record<string, number>> = {};
for (const e of evals) {
  const row: Record<string, number> = { all: e.accuracy ?? 0 };
  for (const t of e.tasks ?? []) row[t.task] = t.accuracy;
  for (const [k, v] of Object.entries(row)) {
    for (const bar of [0.95, 0.99]) {
      const key = `${bar * 100}%`;
      first[k] ??= {};
      if (v >= bar && first[k][key] === undefined) first[k][key] = e.step!;
    }
  }
  if (args.includes('--curve')) {
    const per = Object.fromEntries(Object.entries(row).map(([k, v]) => [k, pct(v)]));
    console.log(JSON.stringify({ step: e.step, min: Math.round((e.time - t0) / 600) / 100, loss: e.evalLoss === undefined ? undefined : Math.round(e.evalLoss * 10000) / 10000, ...per }));
  }
}
// Step rate after warm-up: from the first step line at or after --from-step to the last one.
const a = steps.find((l) => l.step! >= fromStep) ?? steps[0];
const b = steps[steps.length - 1];
const sPerStep = b.step! > a.step! ? (b.time - a.time) / 1000 / (b.step! - a.step!) : NaN;
console.log(JSON.stringify({
  lastStep: b.step, minutesToLastStep: Math.round((b.time - t0) / 600) / 100,
  rateFrom: a.step, rateTo: b.step, sPerStep: Math.round(sPerStep * 1000) / 1000,
  evaluations: evals.length, firstAtOrAbove: first,
}));
