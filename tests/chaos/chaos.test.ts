// The reduced chaos run of the suite (the full one is `npm run chaos`): a clean run, then the same
// training with 25% attackers (one sign-flip of 4 workers), a worker kill -9 mid-task and its
// replacement, a coordinator kill -9 with a torn checkpoint planted before the restart, and a
// fuzzer's malformed messages. Real coordinator and Node workers, as child processes on loopback.
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
});
