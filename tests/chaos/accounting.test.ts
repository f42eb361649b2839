// The chaos suite's independent count: samples from the workers' acknowledgements, decoded from
// self-describing rows; discards and rolled-back steps (coordinator restarts) do not count.
import { describe, expect, it } from 'vitest';
import { countIndependently, decodeSampleId, type TraceLine } from './accounting.ts';

const head = (id: number) => Array.from(`#${String(id).padStart(4, '0')} 1+2=`, (c) => c.charCodeAt(0));
let clock = 0;
const welcome = (t = ++clock): TraceLine => ({ t, ev: 'welcome', workerId: 'w' });
/** A task of `ids` at `step`, acknowledged. */
const acked = (taskId: string, step: number, ids: number[]): TraceLine[] => [
  { t: ++clock, ev: 'task', taskId, step, heads: ids.map(head) },
  { t: ++clock, ev: 'ack', taskId, step },
];

describe('independent sample count', () => {
  it('decodes "#NNNN " rows and nothing else', () => {
    expect(decodeSampleId(head(42))).toBe(42);
    expect(decodeSampleId(Array.from('12+34=', (c) => c.charCodeAt(0)))).toBeNull();
  });

  it('every sample acknowledged once: nothing lost or doubled', () => {
    const a = [welcome(), ...acked('a0', 0, [0, 1]), ...acked('a1', 1, [4, 5])];
    const b = [welcome(), ...acked('b0', 0, [2, 3]), ...acked('b1', 1, [6, 7])];
    const r = countIndependently([a, b], [], 2, 4);
    expect(r).toMatchObject({ trained: 8, lost: 0, doubled: 0, undecodable: 0, badSteps: [] });
    expect([...r.folded[1].entries()]).toEqual([['b0', 2], ['b1', 2]]);
  });

  it('a sample the coordinator never acknowledged is lost; one acknowledged twice is doubled', () => {
    const a = [welcome(), ...acked('a0', 0, [0, 1, 2]), ...acked('a1', 1, [4, 5, 6, 2])];
    const r = countIndependently([a], [], 2, 4);
    expect(r).toMatchObject({ trained: 6, lost: 2, doubled: 1 });
    expect(r.badSteps).toEqual(['0: 3']);
  });

  it('discarded acknowledgements do not count (ban restarted the step); their redo does', () => {
    const a = [welcome(), ...acked('a0', 0, [0, 1]), { t: ++clock, ev: 'discard', step: 0, taskIds: ['a0'] } as TraceLine, ...acked('a0b', 0, [0, 1])];
    const b = [welcome(), ...acked('b0', 0, [2, 3])];
    expect(countIndependently([a, b], [], 1, 4)).toMatchObject({ trained: 4, lost: 0, doubled: 0 });
  });

  it('steps a killed coordinator acknowledged after its last checkpoint are redone, not doubled', () => {
    const a = [welcome(), ...acked('a0', 0, [0, 1]), ...acked('a1', 1, [2, 3]), ...acked('a2', 2, [4, 5])];
    const restartAt = ++clock;
    // Resumed at step 1: step 1 and 2 are done again by the new incarnation.
    const a2 = [welcome(), ...acked('n1', 1, [2, 3]), ...acked('n2', 2, [4, 5])];
    const r = countIndependently([[...a, ...a2]], [{ startedAt: restartAt, resumedStep: 1 }], 3, 2);
    expect(r).toMatchObject({ trained: 6, lost: 0, doubled: 0, undecodable: 0, badSteps: [] });
    expect(r.folded[0].has('a2')).toBe(false); // rolled back with the killed coordinator
    // Without knowing about the restart, the same trace reads as doubled: the rule matters.
    expect(countIndependently([[...a, ...a2]], [], 3, 2).doubled).toBe(4);
  });
});

describe('attacker outcome', () => {
  it('counts lies per identity (a sleeper is honest for N under each), and which folded samples were lies', async () => {
    const { attackerOutcome } = await import('./attackers.ts');
    const w = (id: string): TraceLine => ({ t: ++clock, ev: 'welcome', workerId: id });
    const task = (id: string): TraceLine => ({ t: ++clock, ev: 'task', taskId: id, step: 0, heads: [] });
    const trace = [w('a'), task('a1'), task('a2'), task('a3'), w('b'), task('b1'), task('b2')];
    const folded = new Map([['a1', 2], ['a3', 3], ['b1', 1]]);
    expect(attackerOutcome('sybil:sleeper:1:sign-flip', trace, folded)).toEqual({ identities: 2, tasks: 5, lies: 3, liesPerIdentityMax: 2, foldedSamples: 6, lyingFoldedSamples: 3 });
    // Garbage and stale workers send honest gradients: nothing of theirs counts as a lie.
    expect(attackerOutcome('garbage', trace, folded)).toMatchObject({ lies: 0, lyingFoldedSamples: 0 });
  });
});
