// Shared by the worker tests: a real in-process coordinator (tiny preset, loopback, port 0) with a
// temporary run directory, and a polling wait with a clear timeout message.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator, type CoordinatorHandle } from '../../coordinator/coordinator.ts';
import type { CoordinatorConfigInput } from '../../coordinator/config.ts';

export async function tinyCoordinator(extra: Partial<CoordinatorConfigInput> = {}, runDir?: string): Promise<CoordinatorHandle & { runDir: string; dispose(): Promise<void> }> {
  const dir = runDir ?? mkdtempSync(join(tmpdir(), 'worker-test-'));
  const c = await startCoordinator({
    port: 0, host: '127.0.0.1', preset: 'tiny', runDir: dir, globalBatch: 8, evalEvery: 0, checkpointEvery: 0,
    logLevel: 'silent', resume: false, adminToken: 'worker-test-token', ...extra,
  });
  let closed = false;
  return Object.assign(c, {
    runDir: dir,
    async dispose() {
      if (!closed) await c.close().catch(() => undefined);
      closed = true;
      if (!runDir) rmSync(dir, { recursive: true, force: true });
    },
  });
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
