// `npm run chaos`: the full chaos suite. A clean run, then churn + coordinator kills + fuzzing,
// then 25% attackers of every fault kind (two kinds per run, each aggregator, each compared with a
// clean run of the same aggregator), each against a real
// coordinator and real Node workers on loopback. Prints the table (docs/hardening.md records one)
// and exits 1 if any figure is off: samples lost or doubled, a crash, a corrupt checkpoint, an
// unanswered malformed message, an attacker not banned (slow workers are stragglers, not banned),
// or a final eval loss more than 5% above the clean run's (judged for the default `mean`; robust
// rules' rows are reported: their result depends on the timing-dependent split into tasks).
//
//   npm run chaos [-- --steps N (default 30)] [--json FILE]

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { cleanFor, formatTable, lossDelta, runScenario, type ChaosFigures, type Scenario } from './harness.ts';
import { verdicts } from './verdict.ts';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '30' }, json: { type: 'string' } } });
const steps = Number(values.steps);
const G = 16;
const base = { steps, globalBatch: G, timeoutMs: 900_000 };

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
  // Robust rules: bans judged, loss reported (split-dependent, see Scenario.judgeLoss).
  { name: 'nan+random (trimmed-mean)', honest: 6, attackers: ['nan', 'random'], aggregate: 'trimmed-mean', judgeLoss: false, ...base },
  { name: 'stale+garbage (centered-clip)', honest: 6, attackers: ['stale', 'garbage'], aggregate: 'centered-clip', judgeLoss: false, ...base },
  { name: 'sign-flip, no verify (centered-clip)', honest: 6, attackers: ['sign-flip', 'sign-flip'], aggregate: 'centered-clip', verifyRate: 0, judgeLoss: false, ...base },
];

const rows: ChaosFigures[] = [];
for (const sc of scenarios) {
  process.stdout.write(`scenario ${sc.name}: ${sc.honest} honest + ${sc.attackers.length} attackers (${sc.attackers.join(', ') || 'none'}), ${sc.steps} steps\n`);
  const f = await runScenario(sc, (s) => process.stdout.write(s + '\n'));
  rows.push(f);
  process.stdout.write(`  done in ${f.seconds} s: step ${f.stepsDone}, eval loss ${f.evalLoss?.toFixed(4)}\n`);
}
process.stdout.write('\n' + formatTable(rows) + '\n\n');
for (const f of rows) {
  for (const a of f.attackers) process.stdout.write(`  ${f.scenario}: ${a.fault} (${a.name}) ${a.banned ? 'banned' : 'not banned'}: ${a.detectedBy}\n`);
}
const problems = rows.flatMap((f) => verdicts(f, cleanFor(f, rows)));
if (values.json) writeFileSync(values.json, JSON.stringify({ rows, problems, deltas: rows.map((f) => lossDelta(f, cleanFor(f, rows))) }, null, 2));
if (problems.length) {
  process.stdout.write(`\nFAILED:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write('\nall chaos figures hold: nothing lost or doubled, no crash, no corrupt checkpoint, attackers banned, loss within 5% of clean\n');
process.exit(0);
