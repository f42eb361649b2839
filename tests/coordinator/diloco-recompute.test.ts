// Re-computation of a sampled DiLoCo round on the coordinator's CPU (coordinator/security/
// delta-judge.ts recompute): an honest CPU worker's delta (H fresh-moment AdamW steps, int8 packed)
// is reproduced within RECOMPUTE_TOLERANCE; a delta scaled by 1.1 or trained on the wrong rows
// still passes the Gauntlet-style loss score (it lowers the loss on its round's data) but not the
// re-computation.
import { describe, expect, it } from 'vitest';
import { buildMicroBatch } from '../../shared/data/index.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { decode, encode, DEFAULT_CODEC_PARAMS } from '../../shared/diloco/codec.ts';
import { HostInnerEngine, runRound } from '../../shared/diloco/inner.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { DeltaJudge, RECOMPUTE_TOLERANCE } from '../../coordinator/security/delta-judge.ts';
import type { RoundLease } from '../../coordinator/train/round-trainer.ts';

const model = presetConfig('tiny');
const T = 16, B = 2, H = 4;
const data = syntheticDataset(64, T);
const hyper = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 };
const lrs = [1e-3, 2e-3, 3e-3, 3e-3];

function lease(first: number): RoundLease {
  const rows = Array.from({ length: H * B }, (_, i) => ({ epoch: 0, id: first + i }));
  const b = buildMicroBatch(data, rows.map((r) => r.id));
  let tokens = 0;
  for (const m of b.mask) tokens += m;
  return { id: 'n.r0.1', round: 0, version: 0, workerId: 'w', H, B, rows, tokens, issuedAt: 0, expiresAt: 1e12, recompute: true };
}

async function workerDelta(start: Float32Array, first: number): Promise<Float32Array> {
  const e = new HostInnerEngine(createCpuBackend(model), buildParameterTable(model));
  const b = buildMicroBatch(data, Array.from({ length: H * B }, (_, i) => first + i));
  const r = await runRound(e, start, { B, T: b.T, inputs: b.inputs, targets: b.targets, mask: b.mask }, { ...hyper, lrs });
  return decode(encode(r.delta, 'int8', DEFAULT_CODEC_PARAMS));
}

describe('diloco: CPU re-computation of a sampled round', () => {
  it('accepts the honest delta, refuses a 1.1x scaled one and one from other rows that the loss score lets through', async () => {
    const judge = new DeltaJudge(model, data, 1e9);
    const start = initParameters(model, 5);
    const l = lease(0);
    const round = { lrs, hyper, compress: 'int8' as const, codec: DEFAULT_CODEC_PARAMS };
    const honest = await workerDelta(start, 0);
    expect((await judge.judge(l, start, honest)).ok).toBe(true);
    expect(await judge.recompute(l, start, honest, round)).toBeNull();
    const honestErr = judge.recomputeErrors.at(-1)!;
    expect(honestErr).toBe(0); // a CPU worker reproduces the reference exactly

    const scaled = honest.map((x) => x * 1.1);
    expect((await judge.judge(l, start, scaled)).ok).toBe(true); // the loss score does not see it
    const v = await judge.recompute(l, start, scaled, round);
    expect(v?.ok).toBe(false);
    expect(v && !v.ok && v.code).toBe('VERIFY_FAILED');
    expect(v && !v.ok && v.ban).toMatch(/re-computation/);

    const other = await workerDelta(start, 16); // H honest steps, on rows not of this lease
    const w = await judge.recompute(l, start, other, round);
    expect(w?.ok).toBe(false);
    console.log(`recompute relative L2: honest ${honestErr}, scaled 1.1x ${judge.recomputeErrors.at(-2)!.toExponential(3)}, other rows ${judge.recomputeErrors.at(-1)!.toExponential(3)} (allowed ${RECOMPUTE_TOLERANCE})`);
    expect(judge.counters).toMatchObject({ recomputed: 3, recomputeFailed: 2 });
  });

  it('prepared when the lease goes out (prepare), gives the verdicts and scores it gives unprepared', async () => {
    const start = initParameters(model, 5);
    const round = { lrs, hyper, compress: 'int8' as const, codec: DEFAULT_CODEC_PARAMS };
    const honest = await workerDelta(start, 0);
    const plain = new DeltaJudge(model, data, 1e9);
    const want = await plain.judge(lease(0), start, honest);
    const early = new DeltaJudge(model, data, 1e9);
    const l = lease(0);
    early.prepare(l, start, round); // before the delta exists
    const got = await early.judge(l, start, honest);
    expect(got).toEqual(want);
    expect(await early.recompute(l, start, honest, round)).toBeNull();
    expect(early.recomputeErrors.at(-1)).toBe(0);
    // Prepared, then a scaled delta: refused as unprepared.
    const l2 = lease(0);
    early.prepare(l2, start, round);
    const scaled = honest.map((x) => x * 1.1);
    expect((await early.judge(l2, start, scaled)).ok).toBe(true);
    const v = await early.recompute(l2, start, scaled, round);
    expect(v && !v.ok && v.code).toBe('VERIFY_FAILED');
    // Prepared for other start weights (an older version): not used, the judge computes afresh.
    const old = lease(0);
    early.prepare(old, initParameters(model, 6), round);
    const moved = { ...old, version: 1 };
    expect(await early.recompute(moved, start, honest, round)).toBeNull();
    expect(early.counters).toMatchObject({ recomputed: 3, recomputeFailed: 1 });
  });
});
