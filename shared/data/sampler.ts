// Epoch sampler: each epoch is a seeded permutation of the sample ids 0..size-1, so the order
// depends only on (seed, epoch) and the coordinator can lease disjoint contiguous ranges of it
// ("shards"), re-lease a failed shard's exact ids, and save/restore its cursor in a checkpoint.
// The CoverageLedger records which ids of an epoch were trained and refuses a second time, so a
// run can prove every sample was trained exactly once per epoch.

import { AppError } from '../errors.ts';
import { Rng } from '../rng.ts';

export interface SamplerCursor {
  seed: number;
  size: number;
  epoch: number;
  /** Next position in this epoch's permutation (0..size). */
  position: number;
}

export interface Shard {
  epoch: number;
  /** [start, end) positions in the epoch's permutation. */
  start: number;
  end: number;
  ids: number[];
}

/** Seed of epoch e's permutation: a 32-bit mix of (seed, epoch), so epochs are independent. */
export function epochSeed(seed: number, epoch: number): number {
  let h = (seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The permutation of 0..size-1 used in `epoch`. */
export function epochPermutation(seed: number, epoch: number, size: number): Uint32Array {
  const p = new Uint32Array(size);
  for (let i = 0; i < size; i++) p[i] = i;
  new Rng(epochSeed(seed, epoch)).shuffle(p);
  return p;
}

function checkCursor(c: SamplerCursor): void {
  const bad = (field: string, v: unknown, want: string) =>
    new AppError('ERR_SAMPLER_CURSOR', `epoch sampler: ${field} must be ${want}, got ${String(v)}`, 400,
      'restore the cursor saved by EpochSampler.cursor() for this dataset');
  if (!Number.isInteger(c.seed)) throw bad('seed', c.seed, 'an integer');
  if (!Number.isInteger(c.size) || c.size < 1) throw bad('size', c.size, 'a positive integer');
  if (!Number.isInteger(c.epoch) || c.epoch < 0) throw bad('epoch', c.epoch, 'a non-negative integer');
  if (!Number.isInteger(c.position) || c.position < 0 || c.position > c.size) throw bad('position', c.position, `in 0..${c.size}`);
}

export class EpochSampler {
  private c: SamplerCursor;
  private perm: Uint32Array;
  private permEpoch: number;

  constructor(opts: { seed: number; size: number; epoch?: number; position?: number }) {
    this.c = { seed: opts.seed, size: opts.size, epoch: opts.epoch ?? 0, position: opts.position ?? 0 };
    checkCursor(this.c);
    this.permEpoch = this.c.epoch;
    this.perm = epochPermutation(this.c.seed, this.c.epoch, this.c.size);
  }

  /** Resume from a saved cursor; `size` must match the dataset's (it guards against a changed dataset). */
  static restore(cursor: SamplerCursor, expectedSize?: number): EpochSampler {
    if (expectedSize !== undefined && cursor.size !== expectedSize) {
      throw new AppError('ERR_SAMPLER_CURSOR',
        `epoch sampler: saved cursor is for a dataset of ${cursor.size} samples, this dataset has ${expectedSize}`,
        400, 'resume with the same --data and context length as the checkpoint');
    }
    return new EpochSampler(cursor);
  }

  get epoch(): number { return this.c.epoch; }
  get position(): number { return this.c.position; }
  get size(): number { return this.c.size; }

  /** A copy of the state to save: new EpochSampler(cursor) continues exactly here. */
  cursor(): SamplerCursor {
    return { ...this.c };
  }

  /**
   * Lease the next up-to-n ids. A shard never spans two epochs: at the end of an epoch it is
   * shorter, and the following call starts the next epoch.
   */
  next(n: number): Shard {
    if (!Number.isInteger(n) || n < 1) throw new AppError('ERR_SAMPLER_ARG', `epoch sampler: next(n) needs n >= 1, got ${n}`);
    if (this.c.position >= this.c.size) {
      this.c.epoch++;
      this.c.position = 0;
    }
    const start = this.c.position;
    const end = Math.min(this.c.size, start + n);
    this.c.position = end;
    return { epoch: this.c.epoch, start, end, ids: this.idsAt(this.c.epoch, start, end) };
  }

  /** Ids at positions [start, end) of `epoch` (to re-lease a shard exactly). */
  idsAt(epoch: number, start: number, end: number): number[] {
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= this.c.size)) {
      throw new AppError('ERR_SAMPLER_ARG', `epoch sampler: range [${start}, ${end}) outside 0..${this.c.size}`);
    }
    return Array.from(this.permutation(epoch).subarray(start, end));
  }

  permutation(epoch: number): Uint32Array {
    if (epoch !== this.permEpoch) {
      this.perm = epochPermutation(this.c.seed, epoch, this.c.size);
      this.permEpoch = epoch;
    }
    return this.perm;
  }
}

/** Which ids of each epoch were trained; a second record of the same (epoch, id) is an error. */
export class CoverageLedger {
  private epochs = new Map<number, Uint8Array>();
  private counts = new Map<number, number>();

  constructor(readonly size: number) {}

  record(epoch: number, ids: ArrayLike<number>): void {
    let bits = this.epochs.get(epoch);
    if (!bits) {
      bits = new Uint8Array(Math.ceil(this.size / 8));
      this.epochs.set(epoch, bits);
      this.counts.set(epoch, 0);
    }
    // Check the whole list first so a rejected record changes nothing.
    const seen = new Set<number>();
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.size) {
        throw new AppError('ERR_COVERAGE', `coverage: id ${id} outside 0..${this.size - 1}`, 409);
      }
      if (bits[id >> 3] & (1 << (id & 7)) || seen.has(id)) {
        throw new AppError('ERR_COVERAGE', `coverage: sample ${id} already trained in epoch ${epoch}`, 409,
          'a shard was applied twice: the trainer must apply each lease result once');
      }
      seen.add(id);
    }
    for (let i = 0; i < ids.length; i++) bits[ids[i] >> 3] |= 1 << (ids[i] & 7);
    this.counts.set(epoch, (this.counts.get(epoch) ?? 0) + ids.length);
  }

  trained(epoch: number): number {
    return this.counts.get(epoch) ?? 0;
  }

  /** True when every id 0..size-1 was recorded exactly once in `epoch`. */
  complete(epoch: number): boolean {
    return this.trained(epoch) === this.size;
  }

  /** Ids of `epoch` not yet recorded (for reports). */
  missing(epoch: number): number[] {
    const bits = this.epochs.get(epoch);
    const out: number[] = [];
    for (let id = 0; id < this.size; id++) if (!bits || !(bits[id >> 3] & (1 << (id & 7)))) out.push(id);
    return out;
  }

  /** Serialisable snapshot (for checkpoints): base64 bitsets per epoch. */
  toJSON(): { size: number; epochs: Array<{ epoch: number; count: number; bits: string }> } {
    return {
      size: this.size,
      epochs: [...this.epochs].map(([epoch, bits]) => ({ epoch, count: this.counts.get(epoch) ?? 0, bits: toBase64(bits) })),
    };
  }

  static fromJSON(j: ReturnType<CoverageLedger['toJSON']>): CoverageLedger {
    const l = new CoverageLedger(j.size);
    for (const e of j.epochs) {
      l.epochs.set(e.epoch, fromBase64(e.bits));
      l.counts.set(e.epoch, e.count);
    }
    return l;
  }

  /** Drop epochs before `epoch` (finished ones need not be kept forever). */
  forgetBefore(epoch: number): void {
    for (const e of [...this.epochs.keys()]) if (e < epoch) { this.epochs.delete(e); this.counts.delete(e); }
  }
}

// btoa/atob exist in browsers and Node 20 alike (this file is shared).
function toBase64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return btoa(s);
}
function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
