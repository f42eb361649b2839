// The coordinator as a child process (`node --import tsx coordinator/main.ts --port 0 ...`): killed with
// SIGKILL mid-training and restarted on the same run directory, it resumes from its last
// checkpoint (losing at most the steps since), and training continues. SIGTERM writes a final one.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCheckpoint } from '../../coordinator/checkpoint/format.ts';
import { listCheckpoints } from '../../coordinator/checkpoint/store.ts';
import { startTestWorker, until, untilAsync, type TestWorker } from './test-worker.ts';

const children: ChildProcess[] = [];
const workers: TestWorker[] = [];
const dir = mkdtempSync(join(tmpdir(), 'coord-restart-'));
afterAll(() => {
  workers.forEach((w) => w.close());
  children.forEach((c) => c.exitCode === null && c.kill('SIGKILL'));
  rmSync(dir, { recursive: true, force: true });
});

async function launch(): Promise<{ child: ChildProcess; url: string; out: () => string }> {
  // node itself (not npx/tsx wrappers) so that SIGKILL hits the coordinator, not a parent shell.
  const child = spawn(process.execPath, ['--import', 'tsx', 'coordinator/main.ts', '--port', '0', '--host', '127.0.0.1', '--preset', 'tiny', '--run-dir', dir,
    '--checkpoint-every', '3', '--global-batch', '8', '--eval-every', '0', '--log-level', 'warn', '--admin-token', 'restart-token'], {
    cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'], detached: false,
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await until(() => /COORDINATOR_URL=(\S+)/.test(out) || child.exitCode !== null, 60_000, 'coordinator start');
  const m = /COORDINATOR_URL=(\S+)/.exec(out);
  if (!m) throw new Error(`coordinator did not start:\n${out}`);
  return { child, url: m[1], out: () => out };
}

const status = async (url: string) => (await fetch(url + '/api/status')).json();

describe('coordinator crash and restart', () => {
  it('SIGKILL mid-training, restart: resumes from the newest checkpoint and keeps training', async () => {
    const a = await launch();
    const w1 = startTestWorker(a.url);
    workers.push(w1);
    // Run until past a checkpoint (every 3 steps), then kill -9 without warning.
    await untilAsync(async () => (await status(a.url)).step >= 7, 60_000, 'step 7');
    a.child.kill('SIGKILL');
    await until(() => a.child.exitCode !== null || a.child.signalCode !== null, 10_000, 'child exit');
    w1.close();
    const ckpts = listCheckpoints(dir);
    expect(ckpts.length).toBeGreaterThan(0);
    const newest = readCheckpoint(ckpts[0].file).meta;
    expect(newest.step % 3).toBe(0);
    expect(newest.step).toBeGreaterThanOrEqual(6);

    const b = await launch();
    expect(b.out()).toContain(`resumed from ${ckpts[0].file}`);
    const s2 = await status(b.url);
    expect(s2.step).toBe(newest.step);
    expect(s2.samplesTrained).toBe(newest.step * 8);
    expect(s2.checkpoint.step).toBe(newest.step);
    expect((await (await fetch(b.url + '/api/history')).json()).loss).toHaveLength(newest.step);
    const w2 = startTestWorker(b.url);
    workers.push(w2);
    await untilAsync(async () => (await status(b.url)).step >= newest.step + 2, 60_000, 'training continues after restart');
    // SIGTERM: final checkpoint, clean exit.
    b.child.kill('SIGTERM');
    await until(() => b.child.exitCode !== null, 20_000, 'clean exit');
    expect(b.child.exitCode).toBe(0);
    expect(listCheckpoints(dir)[0].step).toBeGreaterThanOrEqual(newest.step + 2);
  });
});
