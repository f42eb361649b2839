// --objective dpo configuration and data (issue 16): the options and their rules, bad preference
// rows stopping `npm start` with file:line and the reason (exit 2, nothing started), a pair too
// long for --seq-len, `--data preferences` reading the run dir's collected file with a torn last
// line skipped, the protocol's check of a preference task, and the dashboard's eval panel.

import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { validateConfig, USAGE } from '../../coordinator/config.ts';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { validateTask } from '../../shared/protocol/validate.ts';
import { evalSamplesView } from '../../dashboard/src/eval-samples.ts';
import { offByOnePreferences, toJsonl } from './make-preferences.ts';

const root = mkdtempSync(join(tmpdir(), 'dpo-config-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const REPO = resolve(import.meta.dirname, '../..');

function npmStart(args: string[]): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'coordinator/main.ts', '--port', '0', '--preset', 'tiny', '--log-level', 'silent', ...args],
    { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stderr: r.stderr };
}

describe('--objective dpo: options', () => {
  it('defaults, help, and the rules between options', () => {
    const d = validateConfig({});
    expect(d.objective).toBe('lm');
    expect(d.dpoBeta).toBe(0.1);
    expect(d.reference).toBe('init');
    for (const f of ['--objective O', '--dpo-beta X', '--reference R']) expect(USAGE).toContain(f);
    expect(() => validateConfig({ objective: 'dpo' })).toThrow(/--objective dpo needs --data/);
    expect(() => validateConfig({ objective: 'dpo', data: 'x.jsonl', mode: 'diloco' })).toThrow(/--objective dpo runs in --mode sync/);
    expect(() => validateConfig({ objective: 'rlhf' })).toThrow(/--objective must be one of: lm, dpo/);
    expect(() => validateConfig({ objective: 'dpo', data: 'x.jsonl', dpoBeta: 0 })).toThrow(/--dpo-beta must be a positive number/);
  });

  it('a bad row stops `npm start` with file:line and the reason, exit 2, and writes nothing', () => {
    const runDir = join(root, 'bad-run');
    const file = join(root, 'bad.jsonl');
    const good = toJsonl(offByOnePreferences(3, 1)).trim().split('\n');
    writeFileSync(file, [good[0], good[1], '{"prompt": "1+1=", "chosen": "2", "rejected": "2"}', good[2]].join('\n') + '\n');
    const r = npmStart(['--objective', 'dpo', '--data', file, '--run-dir', runDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:3: rejected equals chosen`);
    expect(existsSync(runDir) ? readdirSync(runDir).filter((f) => f.startsWith('ckpt-')) : []).toEqual([]);

    writeFileSync(file, `${good[0]}\n{"prompt": "1+1=", "chosen": 2, "rejected": "3"}\n`);
    const r2 = npmStart(['--objective', 'dpo', '--data', file, '--run-dir', runDir]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain(`${file}:2: chosen must be a string, got number`);
  }, 90_000);

  it('a pair longer than --seq-len is refused with its file:line', async () => {
    const file = join(root, 'long.jsonl');
    writeFileSync(file, toJsonl([...offByOnePreferences(2, 1), { prompt: 'a very long prompt indeed=', chosen: 'yes', rejected: 'no' }]));
    await expect(startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', logLevel: 'silent', objective: 'dpo', data: file, seqLen: 16, runDir: join(root, 'long-run') }))
      .rejects.toThrow(`${file}:3: chosen: instruction sample needs`);
  });

  it('--data preferences reads the run dir\'s preferences.jsonl; a torn last line is skipped, the rest kept', async () => {
    const runDir = join(root, 'collected');
    mkdirSync(runDir, { recursive: true });
    await expect(startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', logLevel: 'silent', objective: 'dpo', data: 'preferences', seqLen: 16, runDir }))
      .rejects.toThrow(/preferences\.jsonl: cannot read \(ENOENT\).*Compare mode/);
    const rows = offByOnePreferences(24, 2).map((r, i) => ({ ...r, step: i, createdAt: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString() }));
    writeFileSync(join(runDir, 'preferences.jsonl'), toJsonl(rows) + '{"prompt": "12+3');
    const c = await startCoordinator({ port: 0, host: '127.0.0.1', preset: 'tiny', logLevel: 'silent', objective: 'dpo', data: 'preferences', seqLen: 16, runDir, evalEvery: 0, adminToken: 'dpo-config-token' });
    try {
      // 24 pairs: 1 held out (5%, at least 1 from 20 on), 23 to train on.
      expect(c.trainer.dataset.size).toBe(23);
      expect(c.trainer.preferences!.dataset.held.length).toBe(1);
      expect(c.trainer.preferences!.dataset.warnings[0]).toMatch(/preferences\.jsonl:25: skipped a torn last line/);
      const s = await (await fetch(c.url + '/api/status')).json();
      expect(s.objective).toBe('dpo');
    } finally {
      await c.close();
    }
  });
});

describe('--objective dpo: a preference task on the wire', () => {
  const model = presetConfig('tiny');
  const task = (B: number, dpo: unknown) => ({
    taskId: 'x', step: 0, version: 0, B, T: 2, inputs: new Int32Array(2 * B), targets: new Int32Array(2 * B), mask: new Uint8Array(2 * B),
    tokens: B / 2, sampleIds: new Uint32Array(Math.max(1, Math.floor(B / 2))), leaseMs: 10, dpo,
  });
  it('accepts pairs with beta and B reference log-probs; refuses odd B, a positive log-prob, a bad beta', () => {
    const ok = validateTask(task(4, { beta: 0.1, refLogProbs: Float32Array.from([-1, -2, -3, -4]) }), model);
    expect(ok.ok && ok.value.dpo?.beta).toBe(0.1);
    const odd = validateTask(task(3, { beta: 0.1, refLogProbs: new Float32Array(3) }), model);
    expect(!odd.ok && odd.message).toMatch(/2 per pair/);
    const pos = validateTask(task(2, { beta: 0.1, refLogProbs: Float32Array.from([-1, 5]) }), model);
    expect(!pos.ok && pos.message).toMatch(/refLogProbs\[1\]: 5 is not a log-probability/);
    const beta = validateTask(task(2, { beta: 0, refLogProbs: Float32Array.from([-1, -1]) }), model);
    expect(!beta.ok && beta.message).toMatch(/beta/);
    const len = validateTask(task(2, { beta: 1, refLogProbs: Float32Array.from([-1]) }), model);
    expect(!len.ok && len.code).toBe('BAD_LENGTH');
  });
});

describe('dashboard: the eval panel in dpo mode', () => {
  it('shows preference accuracy and reward margin, with or without exact-match samples', () => {
    const v = evalSamplesView({ step: 9, accuracy: null, preferenceAccuracy: 0.9333, rewardMargin: 0.41234, pairs: 60 });
    expect(v.heading).toBe('After step 10');
    expect(v.tasks).toEqual(['preference accuracy 93.3% of 60 held-out pairs', 'reward margin 0.4123']);
    expect(v.rows).toEqual([]);
    const w = evalSamplesView({ step: 9, accuracy: 0.8, preferenceAccuracy: 1, rewardMargin: 0.5, pairs: 2, tasks: [{ task: 'addition', correct: 4, total: 5, accuracy: 0.8 }],
      samples: [{ prompt: '1+1=', response: '2', output: '2', correct: true }] });
    expect(w.heading).toBe('After step 10: 80.0% exact match');
    expect(w.tasks[2]).toBe('addition 80.0% (4/5)');
    expect(w.rows).toHaveLength(1);
  });
});
