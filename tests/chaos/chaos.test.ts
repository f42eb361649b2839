// The reduced chaos run of the suite (the full one is `npm run chaos`): a clean run, then the same
// training with 25% attackers (one sign-flip of 4 workers), a worker kill -9 mid-task and its
// replacement, a coordinator kill -9 with a torn checkpoint planted before the restart, and a
// fuzzer's malformed messages; and one --mode diloco run (rounds) with a worker kill, a coordinator
// kill and a sign-flipping attacker. Real coordinator and Node workers, as child processes on loopback.
import { describe, expect, it } from 'vitest';
import { formatTable, runScenario } from './harness.ts';
import { verdicts } from './verdict.ts';

describe('chaos (reduced)', () => {
  it('nothing lost or doubled, no crash, torn checkpoint skipped, attacker banned, loss within 5% of clean', async () => {
    // 12 steps: long enough that the schedule's kills land mid-run even on a quiet machine.
    const base = { steps: 12, globalBatch: 16, timeoutMs: 150_000 };
    const clean = await runScenario({ name: 'clean', honest: 3, attackers: [], ...base });
    const chaos = await runScenario({ name: 'chaos', honest: 3, attackers: ['sign-flip'], workerKills: 1, coordinatorKills: 1, plantTorn: true, fuzz: 24, ...base });
    process.stdout.write(formatTable([clean, chaos]) + '\n');
    expect(verdicts(clean, clean)).toEqual([]);
    expect(verdicts(chaos, clean)).toEqual([]);
    // The figures the verdicts read, stated plainly.
    expect(chaos.samplesTrained).toBe(base.steps * base.globalBatch);
    expect([chaos.samplesLost, chaos.samplesDoubled, chaos.coordinatorCrashes, chaos.checkpointsCorrupt]).toEqual([0, 0, 0, 0]);
    expect(chaos.coordinatorKills).toBe(1);
    expect(chaos.tornSkipped).toBe(1);
    expect(chaos.workersKilled).toBe(1);
    expect(chaos.malformedSent).toBeGreaterThanOrEqual(24);
    expect(chaos.malformedAnswered).toBe(chaos.malformedSent);
    expect(chaos.attackers).toHaveLength(1);
    expect(chaos.attackers[0].banned).toBe(true);
  }, 330_000);

  it('diloco rounds: a worker killed mid-round, a coordinator kill -9 + resume past a torn checkpoint, a sign-flipping delta banned; nothing lost or doubled', async () => {
    // 6 rounds of H = 4 micro-batches of 4 rows per worker; counted from the workers' traces
    // (accounting.ts countRounds): every row handed out in a surviving round trained once, or owed
    // at the end; the coordinator's books agree. The loss is reported, not judged (no clean twin here).
    const f = await runScenario({ name: 'diloco chaos', mode: 'diloco', innerSteps: 4, honest: 3, attackers: ['sign-flip'], steps: 6, globalBatch: 16, workerKills: 1, coordinatorKills: 1, plantTorn: true, judgeLoss: false, timeoutMs: 150_000 });
    process.stdout.write(formatTable([f]) + '\n');
    expect(verdicts(f, f)).toEqual([]);
    expect(f.samplesTrained).toBeGreaterThanOrEqual(6 * 16); // >= one lease per round
    expect([f.samplesLost, f.samplesDoubled, f.coordinatorCrashes, f.checkpointsCorrupt]).toEqual([0, 0, 0, 0]);
    expect([f.coordinatorKills, f.tornSkipped, f.workersKilled]).toEqual([1, 1, 1]);
    expect(f.attackers[0].banned).toBe(true);
    expect(f.attackers[0].outcome.lyingFoldedSamples).toBe(0);
  }, 200_000);
});
