// The Node worker's flags: parsed and validated into one config; bad input is a named error and
// the real CLI exits with code 2 and says which flag is wrong.
import { afterAll, describe, it, expect } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { tinyCoordinator, until } from './helpers.ts';
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

describe('npm run worker against the real coordinator', () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterAll(async () => {
    for (const f of cleanups.reverse()) await f();
  });

  it('trains with --backend cpu, then SIGINT says bye and exits 0', async () => {
    const c = await tinyCoordinator({ maxSteps: 0 });
    cleanups.push(() => c.dispose());
    const child = spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', c.url, '--backend', 'cpu', '--memory', '256MiB', '--name', 'cli-worker'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const me = () => [...c.hub.workers.byId.values()].find((w) => w.hello.name === 'cli-worker');
    await until(() => (me()?.tasksDone ?? 0) >= 2, 60_000, 'the CLI worker to complete 2 tasks');
    expect(me()!.hello).toMatchObject({ backend: 'cpu', userCapBytes: 256 * 2 ** 20, agent: 'node-worker/0.1' });
    child.kill('SIGINT');
    const t0 = Date.now();
    await until(() => me()?.socket === null, 5_000, 'bye to drop the worker');
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await exited).toBe(0);
    expect(out).toMatch(/joined as /);
    expect(out).toMatch(/SIGINT: leaving the cluster/);
    expect(out).toMatch(/stopped \(worker received SIGINT\)/);
  });

  it('a CPU worker stays alive through long tasks (slices its compute so heartbeats get out)', async () => {
    // 64 rows x 64 tokens per task take seconds on the CPU; the coordinator declares a worker dead
    // after 1.5 s of silence. Computing the task in one synchronous piece would get it killed.
    // verifyRate 0: the coordinator's own CPU re-computation of a result would block ITS loop for
    // as long, and it would then blame the worker (see the report); this test is about the worker.
    const c = await tinyCoordinator({ maxSteps: 0, seqLen: 64, globalBatch: 64, maxMicroBatch: 64, heartbeatMs: 200, deadAfterMs: 1500, verifyRate: 0 });
    cleanups.push(() => c.dispose());
    const child = spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', c.url, '--backend', 'cpu', '--name', 'long-tasks', '--quiet'], {
      cwd: root,
      stdio: 'ignore',
    });
    cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
    const me = () => [...c.hub.workers.byId.values()].find((w) => w.hello.name === 'long-tasks');
    await until(() => (me()?.tasksDone ?? 0) >= 2, 90_000, 'two long tasks');
    expect(me()!.plan.microBatch).toBe(64);
    expect(c.bus.recent.filter((e) => e.kind === 'dead')).toEqual([]);
    expect(c.hub.workers.byId.size).toBe(1); // never dropped and rejoined under a new record
    child.kill('SIGINT');
  }, 120_000);
});
