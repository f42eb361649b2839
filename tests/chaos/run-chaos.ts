// `npm run chaos`: the full chaos suite. A clean run, then churn + coordinator kills + fuzzing,
// then 25% attackers of every fault kind (two kinds per run, each aggregator, each compared with a
// clean run of the same aggregator), each against a real
// coordinator and real Node workers on loopback. Prints the table (docs/hardening.md records one)
// and exits 1 if any figure is off: samples lost or doubled, a crash, a corrupt checkpoint, an
// unanswered malformed message, an attacker not banned (slow workers are stragglers, not banned),
// or a final eval loss more than 5% above the clean run's (judged for the default `mean`; robust
// rules' rows are reported: their result depends on the timing-dependent split into tasks).
//
//   npm run chaos [-- --steps N (default 30)] [--json FILE] [--only REGEX (scenario names; the clean
//   runs they are compared with always run)]

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cleanFor, formatTable, lossDelta, runScenario, type ChaosFigures, type Scenario } from './harness.ts';
import { formatAttackers } from './attackers.ts';
import { verdicts } from './verdict.ts';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '30' }, json: { type: 'string' }, only: { type: 'string' } } });
const steps = Number(values.steps);
const G = 16;
const base = { steps, globalBatch: G, timeoutMs: 900_000 };
const dil = { mode: 'diloco' as const, steps: 8, innerSteps: 2, globalBatch: G, timeoutMs: 900_000 };

const scenarios: Scenario[] = [
  { name: 'clean', honest: 6, attackers: [], ...base },
  { name: 'clean (trimmed-mean)', honest: 6, attackers: [], aggregate: 'trimmed-mean', ...base },
  { name: 'clean (centered-clip)', honest: 6, attackers: [], aggregate: 'centered-clip', ...base },
  { name: 'churn+coord-kill', honest: 6, attackers: [], workerKills: 3, freeze: true, coordinatorKills: 2, plantTorn: true, fuzz: 60, ...base },
  // The default configuration (mean + re-computation + bans), every fault kind, judged on loss.
  { name: 'sign-flip+scale (mean)', honest: 6, attackers: ['sign-flip', 'scale:10'], ...base },
  { name: 'nan+random (mean)', honest: 6, attackers: ['nan', 'random'], ...base },
  { name: 'stale+garbage (mean)', honest: 6, attackers: ['stale', 'garbage'], ...base },
  { name: 'slow straggler (mean)', honest: 6, attackers: ['slow:5000'], ...base },
  // Issue 17: attackers that wait, collude, stay small, come back (25% each, default settings).
  { name: 'sleeper (mean)', honest: 6, attackers: ['sleeper:6:sign-flip', 'sleeper:12:scale:-3'], ...base },
  { name: 'collude (mean)', honest: 6, attackers: ['collude:g1', 'collude:g1'], ...base },
  { name: 'bias (mean)', honest: 6, attackers: ['bias:0.003', 'bias:0.0003'], ...base },
  { name: 'bias 1e-5 (mean)', honest: 6, attackers: ['bias:0.00001', 'bias:0.00001'], ...base },
  // Below what re-computation can tell from float error (1e-4 x the gradient's rms) early in the
  // run: bans not expected, the loss is what it costs.
  { name: 'bias 1e-6 (mean)', honest: 6, attackers: ['bias:0.000001', 'bias:0.000001'], expectBans: false, ...base },
  { name: 'sybil (mean)', honest: 6, attackers: ['sybil:sleeper:2:sign-flip', 'sybil:sleeper:2:sign-flip'], ...base },
  { name: 'fuzz storm', honest: 6, attackers: [], fuzz: 10_000, fuzzParallel: 10, ...base },
  // Robust rules: bans judged, loss reported (split-dependent, see Scenario.judgeLoss).
  { name: 'nan+random (trimmed-mean)', honest: 6, attackers: ['nan', 'random'], aggregate: 'trimmed-mean', judgeLoss: false, ...base },
  { name: 'stale+garbage (centered-clip)', honest: 6, attackers: ['stale', 'garbage'], aggregate: 'centered-clip', judgeLoss: false, ...base },
  { name: 'sign-flip, no verify (centered-clip)', honest: 6, attackers: ['sign-flip', 'sign-flip'], aggregate: 'centered-clip', verifyRate: 0, judgeLoss: false, ...base },
  // --mode diloco (issue 13): 8 rounds of H = 2 inner steps per worker (steps = rounds), int8 deltas;
  // attackers act on their deltas (loss score, norm check, re-computation).
  { name: 'clean (diloco)', honest: 6, attackers: [], ...dil },
  { name: 'diloco churn+coord-kill', honest: 6, attackers: [], workerKills: 2, coordinatorKills: 1, plantTorn: true, ...dil },
  { name: 'diloco sign-flip+scale', honest: 6, attackers: ['sign-flip', 'scale:10'], ...dil },
  { name: 'diloco nan+random', honest: 6, attackers: ['nan', 'random'], ...dil },
];

const only = values.only ? new RegExp(values.only) : null;
const chosen = scenarios.filter((sc) => !only || only.test(sc.name) || (sc.name.startsWith('clean') &&
  scenarios.some((x) => only.test(x.name) && (x.aggregate ?? 'mean') === (sc.aggregate ?? 'mean') && (x.mode ?? 'sync') === (sc.mode ?? 'sync'))));
const rows: ChaosFigures[] = [];
for (const sc of chosen) {
  process.stdout.write(`scenario ${sc.name}: ${sc.honest} honest + ${sc.attackers.length} attackers (${sc.attackers.join(', ') || 'none'}), ${sc.steps} steps\n`);
  const f = await runScenario(sc, (s) => process.stdout.write(s + '\n'));
  rows.push(f);
  process.stdout.write(`  done in ${f.seconds} s: step ${f.stepsDone}, eval loss ${f.evalLoss?.toFixed(4)}\n`);
}
process.stdout.write('\n' + formatTable(rows) + '\n\n');
for (const f of rows) {
  for (const a of f.attackers) process.stdout.write(`  ${f.scenario}: ${a.fault} (${a.name}) ${a.banned ? 'banned' : 'not banned'}: ${a.detectedBy}\n`);
}
process.stdout.write('\nwhat each attacker got through (from its own trace):\n' + formatAttackers(rows) + '\n');
process.stdout.write(`\nmalformed messages: ${rows.reduce((a, f) => a + f.malformedSent, 0)} sent, ${rows.reduce((a, f) => a + f.malformedAnswered, 0)} answered; re-computations: ${rows.map((f) => `${f.scenario} ${f.verified} (${f.unusual} unusual)`).join(', ')}\n`);
const problems = rows.flatMap((f) => verdicts(f, cleanFor(f, rows)));
if (values.json) writeFileSync(values.json, JSON.stringify({ rows, problems, deltas: rows.map((f) => lossDelta(f, cleanFor(f, rows))) }, null, 2));
if (problems.length) {
  process.stdout.write(`\nFAILED:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write('\nall chaos figures hold: nothing lost or doubled, no crash, no corrupt checkpoint, attackers banned, loss within 5% of clean\n');
process.exit(0);
