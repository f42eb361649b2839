import { describe, expect, it } from 'vitest';
import { buildMicroBatch } from '../../../shared/data/sequences.ts';
import { CoverageLedger, EpochSampler, epochPermutation } from '../../../shared/data/sampler.ts';
import { syntheticDataset, syntheticId } from '../../../shared/data/synthetic.ts';

const T = 10;

/** Drain one epoch through real micro-batches; the ids are read back from the tokens themselves. */
function drainEpoch(s: EpochSampler, ds: ReturnType<typeof syntheticDataset>, shardSize: number) {
  const epoch = s.epoch === 0 && s.position === 0 ? 0 : s.position >= s.size ? s.epoch + 1 : s.epoch;
  const seen: number[] = [];
  do {
    const shard = s.next(shardSize);
    expect(shard.epoch).toBe(epoch);
    const mb = buildMicroBatch(ds, shard.ids);
    for (let b = 0; b < mb.B; b++) seen.push(syntheticId(mb.inputs.subarray(b * T, (b + 1) * T)));
  } while (s.position < s.size);
  return seen;
}

describe('epoch sampler', () => {
  const size = 103; // not a multiple of the shard size: the last shard of an epoch is short
  const ds = syntheticDataset(size, T);

  it('every id appears exactly once per epoch (read back from the self-describing tokens)', () => {
    const s = new EpochSampler({ seed: 7, size });
    for (let e = 0; e < 3; e++) {
      const seen = drainEpoch(s, ds, 10);
      expect(seen.length).toBe(size);
      expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: size }, (_, i) => i));
    }
    expect(s.epoch).toBe(2);
  });

  it('shards never span epochs', () => {
    const s = new EpochSampler({ seed: 1, size });
    const sizes: number[] = [];
    for (let i = 0; i < 12; i++) sizes.push(s.next(10).ids.length);
    expect(sizes.slice(0, 11)).toEqual([10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3]);
    expect(s.epoch).toBe(1);
  });

  it('the permutation is a function of (seed, epoch): same seed same order, epochs differ', () => {
    const p0 = Array.from(epochPermutation(42, 0, size));
    expect(Array.from(epochPermutation(42, 0, size))).toEqual(p0);
    expect(Array.from(epochPermutation(42, 1, size))).not.toEqual(p0);
    expect(Array.from(epochPermutation(43, 0, size))).not.toEqual(p0);
    expect(p0).not.toEqual(Array.from({ length: size }, (_, i) => i));
    const a = new EpochSampler({ seed: 42, size });
    expect(a.next(size).ids).toEqual(p0);
  });

  it('cursor save/restore resumes exactly, also through JSON', () => {
    const a = new EpochSampler({ seed: 5, size });
    for (let i = 0; i < 13; i++) a.next(9); // into epoch 1
    const saved = JSON.parse(JSON.stringify(a.cursor()));
    const b = EpochSampler.restore(saved, size);
    for (let i = 0; i < 30; i++) expect(b.next(9)).toEqual(a.next(9));
    expect(() => EpochSampler.restore(saved, size + 1)).toThrow(/saved cursor is for a dataset of 103 samples/);
    expect(() => EpochSampler.restore({ ...saved, position: size + 1 })).toThrow(/position must be in 0..103/);
  });

  it('idsAt re-leases a shard with the same ids', () => {
    const s = new EpochSampler({ seed: 3, size });
    s.next(20);
    const shard = s.next(20);
    s.next(500); // into the next epoch, leaving the cached permutation behind
    s.next(5);
    expect(s.idsAt(shard.epoch, shard.start, shard.end)).toEqual(shard.ids);
  });

  it('coverage ledger proves exactly-once and rejects a replayed shard without changing state', () => {
    const s = new EpochSampler({ seed: 11, size });
    const ledger = new CoverageLedger(size);
    const first = s.next(10);
    ledger.record(first.epoch, first.ids);
    expect(() => ledger.record(first.epoch, [s.idsAt(0, 10, 11)[0], first.ids[0]])).toThrow(/already trained in epoch 0/);
    expect(ledger.trained(0)).toBe(10);
    while (s.position < size) {
      const sh = s.next(10);
      ledger.record(sh.epoch, sh.ids);
    }
    expect(ledger.complete(0)).toBe(true);
    expect(ledger.missing(0)).toEqual([]);
    const restored = CoverageLedger.fromJSON(JSON.parse(JSON.stringify(ledger.toJSON())));
    expect(restored.complete(0)).toBe(true);
    expect(() => restored.record(0, [0])).toThrow(/already trained/);
    expect(restored.missing(1).length).toBe(size);
  });
});
