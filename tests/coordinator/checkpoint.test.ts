// Checkpoint files: round trip, verification (magic, checksum, truncation), keep-last-K, newest
// valid chosen with corrupt ones reported, atomic write failure leaves the previous one valid.
import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeCheckpoint, encodeCheckpoint, readCheckpoint, type CheckpointData } from '../../coordinator/checkpoint/format.ts';
import { checkpointName, ensureRunDir, listCheckpoints, loadNewestValid, saveCheckpoint } from '../../coordinator/checkpoint/store.ts';
import { startCoordinator } from '../../coordinator/coordinator.ts';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'ckpt-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => { try { chmodSync(d, 0o755); } catch { /* gone */ } rmSync(d, { recursive: true, force: true }); }));

function sample(step: number, P = 37): CheckpointData {
  const f = (k: number) => Float32Array.from({ length: P }, (_, i) => step * 1000 + k * 100 + i + 0.5);
  return {
    meta: {
      step, version: step, epoch: 0, preset: 'tiny', model: { vocabSize: 257, contextLength: 64, nLayer: 3, nHead: 4, nEmbd: 48 },
      paramCount: P, cursor: { seed: 1, size: 10, epoch: 0, position: 3 }, ledger: { size: 10, epochs: [] },
      dataset: { name: 'd', fingerprint: 'f', size: 10 }, rngState: [1, 2, 3, 4], optimizerStep: step,
      samplesTrained: step * 3, tokensTrained: step * 30, config: { preset: 'tiny' }, history: [], createdAt: new Date(0).toISOString(),
    },
    params: f(0), m: f(1), v: f(2),
  };
}

const bytes = (d: CheckpointData) => Buffer.concat(encodeCheckpoint(d));

describe('checkpoint format', () => {
  it('round-trips every field and tensor bit-exactly', () => {
    const d = sample(7);
    const back = decodeCheckpoint(bytes(d), 'mem');
    expect(back.meta).toEqual(d.meta);
    expect(Array.from(back.params)).toEqual(Array.from(d.params));
    expect(Array.from(back.m)).toEqual(Array.from(d.m));
    expect(Array.from(back.v)).toEqual(Array.from(d.v));
  });

  it('detects a flipped byte, truncation and a wrong magic', () => {
    const b = bytes(sample(3));
    const flipped = Buffer.from(b);
    flipped[flipped.length - 100] ^= 1;
    expect(() => decodeCheckpoint(flipped, 'f')).toThrow(/checksum/);
    expect(() => decodeCheckpoint(b.subarray(0, b.length - 5), 'f')).toThrow(/ERR|checksum|truncated/);
    const magic = Buffer.from(b);
    magic[0] = 0x58;
    expect(() => decodeCheckpoint(magic, 'f')).toThrow(/magic/);
  });
});

describe('checkpoint store', () => {
  it('keeps the last K and resumes from the newest valid one, reporting corrupt ones', () => {
    const dir = tmp();
    for (const s of [1, 2, 3, 4]) saveCheckpoint(dir, sample(s), 3);
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([4, 3, 2]);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp'))).toEqual([]);
    // Corrupt the newest: loading picks step 3 and reports step 4.
    const newest = join(dir, checkpointName(4));
    const b = readFileSync(newest);
    b[200] ^= 0xff;
    writeFileSync(newest, b);
    const r = loadNewestValid(dir);
    expect(r.found?.data.meta.step).toBe(3);
    expect(r.skipped.map((s) => s.file)).toEqual([newest]);
    expect(r.skipped[0].error).toMatch(/ERR_CHECKPOINT_CORRUPT|checksum/);
  });

  it('a failed write is a clear error, leaves no temporary file, and the previous checkpoint stays valid', () => {
    const dir = tmp();
    saveCheckpoint(dir, sample(1), 3);
    // Root ignores permissions, so make the final rename fail instead: a non-empty directory
    // sits where checkpoint 2 should go.
    const blocker = join(dir, checkpointName(2));
    mkdirSync(blocker);
    writeFileSync(join(blocker, 'x'), 'x');
    expect(() => saveCheckpoint(dir, sample(2), 3)).toThrow(/checkpoint .*ckpt-000000002\.vtc: write failed/);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp'))).toEqual([]);
    expect(readCheckpoint(join(dir, checkpointName(1))).meta.step).toBe(1);
    expect(loadNewestValid(dir).found?.data.meta.step).toBe(1);
  });

  it('the coordinator refuses to start on an unwritable run dir, naming it', async () => {
    const dir = tmp();
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'x');
    await expect(startCoordinator({ port: 0, preset: 'tiny', runDir: join(file, 'run'), logLevel: 'silent' })).rejects.toThrow(/run directory .*not-a-dir.* is not writable/);
  });
});
