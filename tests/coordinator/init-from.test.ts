// `--init-from DIR`: a coordinator started on an empty run dir takes its initial parameters from an
// exported Hugging Face-style directory, bit for bit (checked on the trainer and over GET
// /api/export); a checkpoint in the run dir still wins unless --no-resume; an export of another
// model is refused with ERR_IMPORT_CONFIG_MISMATCH, and `npm start` exits 2 on it.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { exportModel } from '../../coordinator/export/export.ts';
import { importSafetensors } from '../../coordinator/export/import.ts';
import { PRESETS } from '../../shared/model/config.ts';
import { initParameters } from '../../shared/model/init.ts';
import { until } from './test-worker.ts';

const root = mkdtempSync(join(tmpdir(), 'coord-init-from-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const tiny = { ...PRESETS.tiny };
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A "trained" tiny model: another seed's init, every value perturbed (so no seeded init equals it). */
function perturbed(seed: number): Float32Array {
  const p = initParameters(tiny, seed);
  for (let i = 0; i < p.length; i++) p[i] = p[i] * 1.25 + Math.sin(i * 0.37 + seed) * 1e-3;
  return p;
}

const base = { port: 0, host: '127.0.0.1', preset: 'tiny', logLevel: 'silent', evalEvery: 0, checkpointEvery: 0, verifyRate: 0 } as const;

describe('--init-from', () => {
  it('starts from the exported weights bit for bit; a checkpoint wins on restart unless --no-resume', async () => {
    const a = perturbed(11);
    const b = perturbed(12);
    const expA = join(root, 'export-a');
    const expB = join(root, 'export-b');
    exportModel(expA, { config: tiny, params: a, step: 42 });
    exportModel(expB, { config: tiny, params: b, step: 7 });
    const runDir = join(root, 'run');

    const c1 = await startCoordinator({ ...base, runDir, initFrom: expA });
    try {
      expect(c1.initSource).toEqual({ kind: 'export', path: expA, exportStep: 42, dtype: 'F32' });
      expect(c1.resumedFrom).toBeNull();
      expect(c1.trainer.step).toBe(0);
      expect(bits(c1.trainer.params).equals(bits(a))).toBe(true);
      expect(bits(c1.trainer.params).equals(bits(initParameters(tiny, 1)))).toBe(false);
      // What the running coordinator serves is the imported model, too.
      const res = await fetch(c1.url + '/api/export/model.safetensors');
      expect(res.status).toBe(200);
      const served = importSafetensors(new Uint8Array(await res.arrayBuffer()), 'GET /api/export/model.safetensors', tiny);
      expect(bits(served.params).equals(bits(a))).toBe(true);
    } finally {
      await c1.close({ checkpoint: true }); // leaves ckpt-000000000.vtc holding A
    }

    // The run dir now has a checkpoint: it wins over another export.
    const c2 = await startCoordinator({ ...base, runDir, initFrom: expB });
    try {
      expect(c2.initSource.kind).toBe('checkpoint');
      expect(c2.resumedFrom).toMatch(/ckpt-000000000\.vtc$/);
      expect(bits(c2.trainer.params).equals(bits(a))).toBe(true);
    } finally {
      await c2.close();
    }

    // --no-resume: the export again.
    const c3 = await startCoordinator({ ...base, runDir, initFrom: expB, resume: false });
    try {
      expect(c3.initSource).toMatchObject({ kind: 'export', path: expB, exportStep: 7 });
      expect(bits(c3.trainer.params).equals(bits(b))).toBe(true);
    } finally {
      await c3.close();
    }
  });

  it('fp16 exports import as their fp32 values', async () => {
    const a = perturbed(13);
    const exp = join(root, 'export-f16');
    exportModel(exp, { config: tiny, params: a, step: 3 }, { dtype: 'f16' });
    const c = await startCoordinator({ ...base, runDir: join(root, 'run-f16'), initFrom: exp });
    try {
      expect(c.initSource).toMatchObject({ kind: 'export', dtype: 'F16' });
      let maxRel = 0;
      for (let i = 0; i < a.length; i++) maxRel = Math.max(maxRel, Math.abs(c.trainer.params[i] - a[i]) / Math.max(Math.abs(a[i]), 1e-4));
      expect(maxRel).toBeLessThan(1e-3);
      expect(bits(c.trainer.params).equals(bits(a))).toBe(false);
    } finally {
      await c.close();
    }
  });

  it('refuses an export of another model with ERR_IMPORT_CONFIG_MISMATCH naming the fields; main exits 2', async () => {
    const exp = join(root, 'export-mismatch');
    exportModel(exp, { config: tiny, params: perturbed(14), step: 1 });
    const err = await startCoordinator({ ...base, preset: 'small', runDir: join(root, 'run-mismatch'), initFrom: exp }).then(
      () => null,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(err?.code).toBe('ERR_IMPORT_CONFIG_MISMATCH');
    expect(err?.message).toContain('nLayer 3 (export) vs 5 (run)');
    expect(err?.message).toContain('--preset');

    const missing = await startCoordinator({ ...base, runDir: join(root, 'run-missing'), initFrom: join(root, 'no-such-dir') }).then(
      () => null,
      (e: unknown) => e as { code?: string },
    );
    expect(missing?.code).toBe('ERR_IMPORT_FILE');

    const child = spawn(process.execPath, ['--import', 'tsx', 'coordinator/main.ts', '--port', '0', '--host', '127.0.0.1', '--preset', 'small',
      '--run-dir', join(root, 'run-main'), '--init-from', exp, '--log-level', 'silent'], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    try {
      await until(() => child.exitCode !== null, 60_000, 'main to exit');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    expect(child.exitCode).toBe(2);
    expect(out).toContain('model config differs');
    expect(out).not.toContain('COORDINATOR_URL=');
  });
});
