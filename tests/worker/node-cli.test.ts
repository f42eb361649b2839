// The Node worker's flags: parsed and validated into one config; bad input is a named error and
// the real CLI exits with code 2 and says which flag is wrong.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { parseWorkerArgs } from '../../worker-web/node/args.ts';
import { AppError } from '../../shared/errors.ts';

const root = new URL('../..', import.meta.url).pathname;

describe('parseWorkerArgs', () => {
  it('reads every flag', () => {
    const a = parseWorkerArgs(
      ['--url', 'http://127.0.0.1:9000', '--backend', 'cpu', '--memory', '2GiB', '--fault', 'scale:4', '--name', 'w1', '--seed', '7'],
      'host',
    );
    expect(a).toMatchObject({ url: 'http://127.0.0.1:9000', backend: 'cpu', memoryCap: 2 * 2 ** 30, fault: { kind: 'scale', factor: 4 }, name: 'w1', seed: 7 });
  });
  it('defaults: webgpu, no fault, host name', () => {
    const a = parseWorkerArgs(['--url', 'https://example.org'], 'myhost');
    expect(a).toMatchObject({ backend: 'webgpu', fault: { kind: 'none' }, name: 'myhost', seed: 1, memoryCap: undefined });
  });
  it.each([
    [[], /--url is required/],
    [['--url', 'ftp://x'], /--url must be an http/],
    [['--url', 'http://x', '--backend', 'cuda'], /--backend must be webgpu or cpu/],
    [['--url', 'http://x', '--memory', 'lots'], /--memory/],
    [['--url', 'http://x', '--fault', 'evil'], /--fault "evil"/],
    [['--url', 'http://x', '--seed', '-3'], /--seed/],
    [['--url', 'http://x', '--name', 'a\u0007b'], /--name/],
    [['--url', 'http://x', '--bogus'], /Unknown option '--bogus'/],
  ])('refuses %j', (argv, re) => {
    let err: unknown;
    try {
      parseWorkerArgs(argv as string[], 'h');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    expect((err as Error).message).toMatch(re);
  });
});

describe('npm run worker (real process)', () => {
  it('exits 2 with the flag named on bad input, 0 on --help', () => {
    const bad = spawnSync(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', 'http://127.0.0.1:1', '--fault', 'scale:0'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--fault "scale:0"/);
    expect(bad.stderr).toMatch(/usage: npm run worker/);
    const help = spawnSync(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--help'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--backend B/);
  });
});
