// The playground's Compare mode decisions (dashboard/src/compare-view.ts), in Node without a DOM,
// and the dashboard's preference count (statusView).
import { describe, expect, it } from 'vitest';
import { choiceMessage, choiceState, compareRequests, countText, modeFromHash, preferenceBody } from '../../dashboard/src/compare-view.ts';
import { statusView } from '../../dashboard/src/view.ts';
import { checkPreferenceRow } from '../../shared/data/preference-rows.ts';
import type { StatusSnapshot } from '../../shared/protocol/dashboard.ts';

const input = { prompt: '12+34=', maxTokens: '8', temperature: '0.9', seed: '41' };
const never = () => { throw new Error('no random seed expected'); };

describe('compare view', () => {
  it('the mode comes from the hash', () => {
    expect(modeFromHash('#compare')).toBe('compare');
    expect(modeFromHash('compare')).toBe('compare');
    expect(modeFromHash('')).toBe('generate');
    expect(modeFromHash('#comparex')).toBe('generate');
  });

  it('two requests: same prompt, length and temperature; seeds N and N+1 (wrapping); random N when blank', () => {
    expect(compareRequests(input, never)).toEqual([
      { prompt: '12+34=', maxTokens: 8, temperature: 0.9, seed: 41 },
      { prompt: '12+34=', maxTokens: 8, temperature: 0.9, seed: 42 },
    ]);
    expect(compareRequests({ ...input, seed: String(2 ** 32 - 1) }, never).map((r) => r.seed)).toEqual([2 ** 32 - 1, 0]);
    expect(compareRequests({ ...input, seed: ' ' }, () => 7).map((r) => r.seed)).toEqual([7, 8]);
  });

  it('input that cannot make two different samples is refused with a sentence', () => {
    expect(() => compareRequests({ ...input, prompt: '' }, never)).toThrow(/enter a prompt/);
    expect(() => compareRequests({ ...input, temperature: '0' }, never)).toThrow(/Temperature 0 is greedy: both samples would be the same/);
    expect(() => compareRequests({ ...input, temperature: '-1' }, never)).toThrow(/Temperature must be a number ≥ 0/);
    expect(() => compareRequests({ ...input, maxTokens: '0' }, never)).toThrow(/Max tokens must be a whole number ≥ 1/);
    expect(() => compareRequests({ ...input, maxTokens: '2.5' }, never)).toThrow(/Max tokens/);
    expect(() => compareRequests({ ...input, seed: '-3' }, never)).toThrow(/Seed must be a whole number from 0 to 4294967295/);
    expect(() => compareRequests({ ...input, seed: String(2 ** 32) }, never)).toThrow(/Seed must/);
  });

  it('A or B stores the pair with the other as rejected; Neither stores nothing; bodies pass the server rules', () => {
    const p = { prompt: 'rev cat=', a: 'tac', b: 'tca' };
    const a = preferenceBody('A', p);
    const b = preferenceBody('B', p);
    expect(a).toEqual({ prompt: 'rev cat=', chosen: 'tac', rejected: 'tca' });
    expect(b).toEqual({ prompt: 'rev cat=', chosen: 'tca', rejected: 'tac' });
    expect(preferenceBody('neither', p)).toBeNull();
    expect(checkPreferenceRow(a, 'test')).toEqual(a);
  });

  it('a pair that the server would refuse cannot be chosen, with the reason', () => {
    expect(choiceState({ prompt: 'p', a: 'x', b: 'y' })).toEqual({ canChoose: true, note: 'Which continuation is better?' });
    expect(choiceState({ prompt: 'p', a: 'same', b: 'same' })).toMatchObject({ canChoose: false, note: expect.stringMatching(/Both samples are the same/) });
    expect(choiceState({ prompt: 'p', a: '', b: 'y' })).toMatchObject({ canChoose: false, note: expect.stringMatching(/Sample A is empty/) });
    expect(choiceState({ prompt: 'p', a: 'x', b: '' })).toMatchObject({ canChoose: false, note: expect.stringMatching(/Sample B is empty/) });
    // Whatever choiceState allows, the shared row rules accept.
    for (const pair of [{ prompt: 'p', a: 'x', b: 'y' }, { prompt: 'p', a: '', b: 'y' }, { prompt: 'p', a: 'z', b: 'z' }]) {
      const body = preferenceBody('A', pair)!;
      const accepted = (() => { try { checkPreferenceRow(body, 't'); return true; } catch { return false; } })();
      expect(accepted).toBe(choiceState(pair).canChoose);
    }
  });

  it('messages and the count text', () => {
    expect(choiceMessage('A', 3)).toBe('Recorded: A is better (3 stored).');
    expect(choiceMessage('B', null)).toBe('Recorded: B is better.');
    expect(choiceMessage('neither', 3)).toBe('Skipped: nothing recorded.');
    expect(countText(0)).toBe('0 pairs');
    expect(countText(1)).toBe('1 pair');
    expect(countText(12)).toBe('12 pairs');
    expect(countText(null)).toBe('—');
    expect(countText(undefined)).toBe('—');
  });

  it('the dashboard shows the preference count from the status, or nothing when absent', () => {
    const snap = { step: 1, epoch: 0, loss: null, lr: 0, samplesTrained: 0, paused: false, finished: false, model: { preset: 'tiny', params: 1 }, checkpoint: null, eval: null, accounting: null } as unknown as StatusSnapshot;
    expect(statusView({ ...snap, preferences: { count: 4 } }).preferences).toBe(4);
    expect(statusView(snap).preferences).toBeNull();
  });
});
