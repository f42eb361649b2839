// The coordinator's one typed config: defaults, precedence (file < env < flags), and errors that
// name the option and what is allowed.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema, judgeThreadCount, loadConfig, USAGE, validateConfig } from '../../coordinator/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'coord-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('coordinator config', () => {
  it('has documented defaults', () => {
    const { config, adminTokenGenerated } = loadConfig([], {});
    expect(config).toMatchObject({ port: 8080, preset: 'small', runDir: './runs/default', globalBatch: 8, lr: 1e-3, minLr: 1e-5, warmupSteps: 200, decaySteps: 6000, stableFraction: 0.8, answers: 'padded-reversed', checkpointEvery: 50, keepCheckpoints: 3, maxSteps: 0, seed: 1, deadAfterMs: 10_000 });
    expect(adminTokenGenerated).toBe(true);
  });

  it('merges --config file < env < flags', () => {
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ preset: 'tiny', port: 1111, globalBatch: 8, lr: 0.01 }));
    const { config } = loadConfig(['--config', file, '--global-batch', '4', '--no-resume'], { PORT: '2222', ADMIN_TOKEN: 'from-env-token' });
    expect(config).toMatchObject({ preset: 'tiny', port: 2222, globalBatch: 4, lr: 0.01, adminToken: 'from-env-token', resume: false });
    expect(loadConfig(['--port', '0'], { PORT: '2222' }).config.port).toBe(0);
    expect(loadConfig(['--init-from', 'exports/step-100'], {}).config.initFrom).toBe('exports/step-100');
    expect(loadConfig([], {}).config.initFrom).toBeUndefined();
    expect(USAGE).toMatch(/--init-from DIR .*\(default: off\)/s);
  });

  it('--help lists every option once, each with its default, and every listed flag parses', () => {
    const keys = Object.keys(configSchema.def.shape).filter((k) => k !== 'resume');
    expect(keys.length).toBeGreaterThan(30);
    for (const k of keys) {
      const flag = `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} `;
      const at = USAGE.indexOf(`\n  ${flag}`);
      expect(at, flag).toBeGreaterThan(0);
      expect(USAGE.indexOf(`\n  ${flag}`, at + 1), `${flag} listed twice`).toBe(-1);
      // The option's entry runs to the next option line; its default is stated in it.
      const entry = USAGE.slice(at + 1).split(/\n  --/)[0];
      expect(entry, flag).toMatch(/\(default[: ]/);
    }
    // The defaults shown are the ones validation applies.
    expect(USAGE).toMatch(/--global-batch N .*\(default 8\)/);
    expect(USAGE).toMatch(/--port N .*\(default 8080\)/);
    expect(USAGE).toMatch(/--no-resume/);
    expect(loadConfig(['--seq-len', '8', '--rate-limit', '2.5', '--aggregate', 'trimmed-mean'], {}).config).toMatchObject({ seqLen: 8, rateLimit: 2.5, aggregate: 'trimmed-mean' });
  });

  it('names the bad option and the allowed values', () => {
    expect(() => loadConfig(['--preset', 'huge'], {})).toThrow(/--preset must be one of: tiny, small, gpt2/);
    expect(() => loadConfig(['--global-batch', '0'], {})).toThrow(/--global-batch must be >= 1/);
    expect(() => loadConfig(['--port', 'abc'], {})).toThrow(/--port expects a integer|--port expects an integer/);
    expect(() => loadConfig(['--lr=-1'], {})).toThrow(/--lr must be a positive number/);
    expect(() => loadConfig(['--stable-fraction', '1.5'], {})).toThrow(/--stable-fraction must be in \[0, 1\]/);
    expect(loadConfig(['--stable-fraction', '0.8'], {}).config.stableFraction).toBe(0.8);
    expect(() => loadConfig(['--frobnicate', '1'], {})).toThrow(/frobnicate.*allowed flags: .*--preset/);
    expect(() => validateConfig({ presetz: 'tiny' })).toThrow(/unknown option\(s\) presetz; allowed: .*preset/);
    expect(() => loadConfig(['--admin-token', 'short'], {})).toThrow(/--admin-token must be at least 8/);
    expect(() => loadConfig(['--heartbeat-ms', '5000', '--dead-after-ms', '4000'], {})).toThrow(/dead-after-ms must be larger/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ nope');
    expect(() => loadConfig(['--config', bad], {})).toThrow(/not valid JSON/);
    expect(() => loadConfig(['--config', join(dir, 'missing.json')], {})).toThrow(/cannot read \(ENOENT\)/);
    try {
      loadConfig(['--preset', 'huge'], {});
    } catch (e) {
      expect((e as { code: string }).code).toBe('ERR_CONFIG');
    }
  });

  it('--judge-threads: auto (min(8, cores - 1), at least 1), N, or a named error', () => {
    expect(judgeThreadCount(validateConfig({ mode: 'diloco', judgeThreads: '3' }))).toBe(3);
    expect(judgeThreadCount(validateConfig({ mode: 'diloco', judgeThreads: '0' }))).toBe(0);
    const auto = judgeThreadCount(validateConfig({ mode: 'diloco' }));
    expect(auto).toBeGreaterThanOrEqual(1);
    expect(auto).toBeLessThanOrEqual(8);
    expect(() => validateConfig({ judgeThreads: 'many' })).toThrow(/--judge-threads must be auto or an integer in \[0, 64\]/);
    expect(() => loadConfig(['--judge-threads', '65'], {})).toThrow(/--judge-threads must be auto or an integer in \[0, 64\]/);
  });
});
