// The checkpoint file format (one file per checkpoint), readable by any tool via readCheckpoint():
//
//   bytes 0..7    magic "VTCKPT01"
//   bytes 8..11   format version, u32 LE (CHECKPOINT_FORMAT_VERSION)
//   bytes 12..15  header length H, u32 LE
//   16..16+H      header: UTF-8 JSON (CheckpointMeta), padded with spaces to a multiple of 4
//   then          params, adam m, adam v: 3 x paramCount float32 LE, in parameter-table order
//   last 32       SHA-256 of every byte before it
//
// Writing is atomic: a temporary file in the same directory, fsync, rename, fsync the directory;
// a crash at any moment leaves either the previous set of checkpoints or the new complete one.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import type { RngState } from '../../shared/rng.ts';
import type { HistoryPoint } from '../../shared/protocol/dashboard.ts';
import { writeFileAtomic } from './atomic.ts';

export const CHECKPOINT_MAGIC = 'VTCKPT01';
export const CHECKPOINT_FORMAT_VERSION = 1;
const PREFIX = 16;
const HASH = 32;

export interface CheckpointMeta {
  step: number;
  /** Parameter version (== step: one version per optimizer step). */
  version: number;
  epoch: number;
  preset: string;
  model: ModelConfig;
  paramCount: number;
  /** Data sampler cursor (shared/data EpochSampler.cursor()). */
  cursor: { seed: number; size: number; epoch: number; position: number };
  /** Exactly-once ledger (shared/data CoverageLedger.toJSON()). */
  ledger: { size: number; epochs: Array<{ epoch: number; count: number; bits: string }> };
  dataset: { name: string; fingerprint: string; size: number };
  rngState: RngState;
  /** AdamW step count t (bias correction). */
  optimizerStep: number;
  samplesTrained: number;
  tokensTrained: number;
  /** The coordinator config that produced it (no secrets). */
  config: Record<string, unknown>;
  /** Recent history points, so the dashboard's curves survive a restart. */
  history: HistoryPoint[];
  /**
   * --mode diloco only (coordinator/train/round-trainer.ts): the round, and the rows owed to
   * training ([epoch, id]: the running round's and those returned by workers that missed a round).
   * In such a checkpoint `m` holds the outer Nesterov momentum and `v` the published weights.
   */
  diloco?: { round: number; published: boolean; owed: Array<[number, number]> };
  createdAt: string;
}

export interface CheckpointData {
  meta: CheckpointMeta;
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Serialise a checkpoint to its file bytes (pieces, to avoid one big concatenation). */
export function encodeCheckpoint(data: CheckpointData): Uint8Array[] {
  const P = data.meta.paramCount;
  for (const [name, a] of [['params', data.params], ['m', data.m], ['v', data.v]] as const) {
    if (a.length !== P) throw new AppError('ERR_CHECKPOINT_WRITE', `checkpoint: ${name} has ${a.length} values, paramCount is ${P} (bug)`, 500);
  }
  let json = JSON.stringify(data.meta);
  const enc = new TextEncoder();
  let header = enc.encode(json);
  const pad = (4 - (header.length % 4)) % 4;
  if (pad) header = enc.encode(json + ' '.repeat(pad));
  const prefix = new Uint8Array(PREFIX);
  prefix.set(enc.encode(CHECKPOINT_MAGIC), 0);
  const dv = new DataView(prefix.buffer);
  dv.setUint32(8, CHECKPOINT_FORMAT_VERSION, true);
  dv.setUint32(12, header.length, true);
  const pieces = [prefix, header, bytesOf(data.params), bytesOf(data.m), bytesOf(data.v)];
  const h = createHash('sha256');
  for (const p of pieces) h.update(p);
  pieces.push(new Uint8Array(h.digest()));
  return pieces;
}

/** Parse and verify checkpoint bytes; `where` names the file in errors (ERR_CHECKPOINT_CORRUPT). */
export function decodeCheckpoint(buf: Uint8Array, where: string): CheckpointData {
  const bad = (why: string) =>
    new AppError('ERR_CHECKPOINT_CORRUPT', `checkpoint ${where}: ${why}`, 500, 'the file is damaged or not a checkpoint; older checkpoints in the run directory are used instead');
  if (buf.length < PREFIX + HASH) throw bad(`too short (${buf.length} bytes)`);
  const magic = new TextDecoder().decode(buf.subarray(0, 8));
  if (magic !== CHECKPOINT_MAGIC) throw bad(`bad magic "${magic.replace(/[^\x20-\x7e]/g, '?')}"`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const fv = dv.getUint32(8, true);
  if (fv !== CHECKPOINT_FORMAT_VERSION) throw bad(`format version ${fv}, this build reads ${CHECKPOINT_FORMAT_VERSION}`);
  const H = dv.getUint32(12, true);
  if (PREFIX + H + HASH > buf.length) throw bad('header length beyond the end of the file (truncated)');
  const body = buf.subarray(0, buf.length - HASH);
  const digest = createHash('sha256').update(body).digest();
  const stored = buf.subarray(buf.length - HASH);
  if (!digest.equals(stored)) throw bad('checksum mismatch (truncated or modified)');
  let meta: CheckpointMeta;
  try {
    meta = JSON.parse(new TextDecoder().decode(buf.subarray(PREFIX, PREFIX + H)));
  } catch (e) {
    throw bad(`header is not JSON (${(e as Error).message})`);
  }
  const P = meta.paramCount;
  if (!Number.isInteger(P) || P <= 0) throw bad(`paramCount ${String(P)}`);
  const start = PREFIX + H;
  if (start + 3 * 4 * P !== body.length) throw bad(`tensor section is ${body.length - start} bytes, expected ${3 * 4 * P}`);
  // Copy into aligned arrays (the file buffer's offset need not be 4-aligned).
  const take = (i: number) => {
    const out = new Float32Array(P);
    new Uint8Array(out.buffer).set(body.subarray(start + i * 4 * P, start + (i + 1) * 4 * P));
    return out;
  };
  return { meta, params: take(0), m: take(1), v: take(2) };
}

/** Read and verify one checkpoint file (for the coordinator, export and generate tools). */
export function readCheckpoint(file: string): CheckpointData {
  let buf: Buffer;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new AppError('ERR_CHECKPOINT_READ', `checkpoint ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 404, 'check the path');
  }
  return decodeCheckpoint(buf, file);
}

/**
 * Atomic write (writeFileAtomic: `${file}.tmp-<pid>` + fsync + rename + fsync(dir)). On any failure the
 * temporary file is removed, the target is untouched, and ERR_CHECKPOINT_WRITE says where and why.
 */
export function writeCheckpointFile(file: string, data: CheckpointData): void {
  const pieces = encodeCheckpoint(data); // its own ERR_CHECKPOINT_WRITE (a bug), before any file is touched
  try {
    writeFileAtomic(file, pieces);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new AppError('ERR_CHECKPOINT_WRITE', `checkpoint ${file}: write failed (${code ?? (e as Error).message})`, 500,
      code === 'ENOSPC' ? 'the disk is full; free space — the previous checkpoint is still valid' : 'check that the run directory is writable; the previous checkpoint is still valid');
  }
}
