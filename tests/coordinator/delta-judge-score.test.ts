// The loss score of a DiLoCo delta (coordinator/security/delta-judge.ts judge) on a real round of
// H AdamW steps on the CPU reference: the honest delta is accepted; the same delta sign-flipped is
// refused with a ban (it raises the scored loss more than its reverse move does); a blown-up one
// (a multiple of the honest move that raises the loss by more than LOSS_BLOWUP) is refused with a
// ban whichever way the reverse goes.
import { describe, expect, it } from 'vitest';
import { buildMicroBatch } from '../../shared/data/index.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { HostInnerEngine, runRound } from '../../shared/diloco/inner.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import { DeltaJudge, LOSS_BLOWUP, SCORE_ROWS, scoreFailurePenalty } from '../../coordinator/security/delta-judge.ts';
import { Reputation } from '../../coordinator/security/reputation.ts';
import type { RoundLease } from '../../coordinator/train/round-trainer.ts';
import { Rng } from '../../shared/rng.ts';

const model = presetConfig('tiny');
const T = 16, B = 2, H = 4;
const data = syntheticDataset(64, T);
const hyper = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1 };

describe('diloco: loss score of a delta', () => {
  it('accepts the honest delta, bans it sign-flipped (worse than its reverse) or blown up', async () => {
    const rows = Array.from({ length: H * B }, (_, i) => ({ epoch: 0, id: i }));
    const b = buildMicroBatch(data, rows.map((x) => x.id));
    const lease: RoundLease = { id: 'n.r0.1', round: 0, version: 0, workerId: 'w', H, B, rows, tokens: b.mask.reduce((a, m) => a + m, 0), issuedAt: 0, expiresAt: 1e12 };
    const batch = { B, T: b.T, inputs: b.inputs, targets: b.targets, mask: b.mask };
    const start = initParameters(model, 5);
    const r = await runRound(new HostInnerEngine(createCpuBackend(model), buildParameterTable(model)), start, batch, { ...hyper, lrs: [3e-3, 3e-3, 3e-3, 3e-3] });
    const cpu = createCpuBackend(model);
    const scored = buildMicroBatch(data, rows.slice(0, SCORE_ROWS).map((x) => x.id));
    const lossAt = async (s: number) => {
      await cpu.setParams(start.map((x, i) => x - s * r.delta[i]));
      return (await cpu.forward(scored)).loss;
    };
    const judge = new DeltaJudge(model, data, 1e9);
    const honest = await judge.judge(lease, start, r.delta);
    expect(honest.ok).toBe(true);
    const flipped = await judge.judge(lease, start, r.delta.map((x) => -x));
    expect(flipped.ok).toBe(false);
    expect(!flipped.ok && flipped.code).toBe('VERIFY_FAILED');
    expect(!flipped.ok && flipped.ban).toMatch(/raises the loss .* \(the reverse move: /);
    // Far along the honest direction: the loss rises by more than LOSS_BLOWUP.
    const before = await lossAt(0);
    let t = 1;
    while ((await lossAt(t)) <= before * (1 + LOSS_BLOWUP)) t *= 2;
    const blown = await judge.judge(lease, start, r.delta.map((x) => x * t));
    expect(blown.ok).toBe(false);
    expect(!blown.ok && blown.ban).toMatch(/raises the loss/);
    expect(judge.counters.lossRaised).toBe(2);
    // Which refusals were the reverse test's alone (a sparse codec's penalty instead of a ban):
    // the flipped one unless it also blew up, never the blown-up one.
    expect(!flipped.ok && flipped.scoreOnly).toBe((await lossAt(-1)) <= before * (1 + LOSS_BLOWUP));
    expect(!blown.ok && blown.scoreOnly).toBe(false);
  });

  it('a move that raises the loss both ways (an overshoot, as fresh moments make) is refused as a strike, not banned; its sign-flipped descent still is', async () => {
    const rows = Array.from({ length: H * B }, (_, i) => ({ epoch: 0, id: i }));
    const b = buildMicroBatch(data, rows.map((x) => x.id));
    const lease: RoundLease = { id: 'n.r0.2', round: 0, version: 0, workerId: 'w', H, B, rows, tokens: b.mask.reduce((a, m) => a + m, 0), issuedAt: 0, expiresAt: 1e12 };
    const start = initParameters(model, 5);
    const cpu = createCpuBackend(model);
    const scored = buildMicroBatch(data, rows.slice(0, SCORE_ROWS).map((x) => x.id));
    const lossAt = async (w: Float32Array) => {
      await cpu.setParams(w);
      return (await cpu.forward(scored)).loss;
    };
    const before = await lossAt(start);
    // A random direction (no descent either way), scaled until both moves raise the loss by more
    // than the tolerance but less than LOSS_BLOWUP; the sign whose move is the worse one.
    const rng = new Rng(11);
    const noise = new Float32Array(start.length).map(() => rng.next() - 0.5);
    let pick: Float32Array | null = null;
    for (let s = 0.01; s < 2 && !pick; s *= 1.5) {
      const d = noise.map((x) => x * s);
      const minus = await lossAt(start.map((x, i) => x - d[i]));
      const plus = await lossAt(start.map((x, i) => x + d[i]));
      if (Math.min(minus, plus) > before * 1.03 && Math.max(minus, plus) < before * (1 + LOSS_BLOWUP)) pick = minus >= plus ? d : d.map((x) => -x);
    }
    expect(pick, 'a scale with both moves between +3% and +50%').not.toBeNull();
    const judge = new DeltaJudge(model, data, 1e9);
    const v = await judge.judge(lease, start, pick!);
    expect(v.ok).toBe(false);
    expect(!v.ok && v.code).toBe('VERIFY_FAILED');
    expect(!v.ok && v.overshoot).toBe(true);
    expect(!v.ok && v.ban).toBeUndefined();
    expect(!v.ok && v.message).toMatch(/both directions raise the loss/);
    expect(judge.counters.overshoots).toBe(1);
    // A sign-flipped descent step: its reverse (the honest move) lowers the loss: banned.
    const r = await runRound(new HostInnerEngine(createCpuBackend(model), buildParameterTable(model)), start, { B, T: b.T, inputs: b.inputs, targets: b.targets, mask: b.mask }, { ...hyper, lrs: [3e-3, 3e-3, 3e-3, 3e-3] });
    const flipped = await judge.judge(lease, start, r.delta.map((x) => -x));
    expect(!flipped.ok && flipped.ban).toMatch(/raises the loss/);
    expect(!flipped.ok && flipped.overshoot).toBeUndefined();
  });

  it('a delta judged before its lease was prepared (a worker answering at once) is judged, and I/O runs between the scored forwards', async () => {
    const rows = Array.from({ length: H * B }, (_, i) => ({ epoch: 0, id: i }));
    const b = buildMicroBatch(data, rows.map((x) => x.id));
    const lease: RoundLease = { id: 'n.r0.2', round: 0, version: 0, workerId: 'w', H, B, rows, tokens: b.mask.reduce((a, m) => a + m, 0), issuedAt: 0, expiresAt: 1e12 };
    const start = initParameters(model, 5);
    const r = await runRound(new HostInnerEngine(createCpuBackend(model), buildParameterTable(model)), start, { B, T: b.T, inputs: b.inputs, targets: b.targets, mask: b.mask }, { ...hyper, lrs: [3e-3, 3e-3, 3e-3, 3e-3] });
    const judge = new DeltaJudge(model, data, 1e9);
    // The coordinator prepares a lease in setImmediate after sending it; the delta can come first.
    // Its prepared loss is queued behind the judgement then: it must not be waited for (it was,
    // and the judge's queue hung: every later delta of the run waited forever).
    const verdict = judge.judge(lease, start, r.delta);
    judge.prepare(lease, start);
    const v = await Promise.race([verdict, new Promise<'hung'>((res) => setTimeout(() => res('hung'), 20_000))]);
    expect(v).toMatchObject({ ok: true });
    // Timers fire while a burst of judgements runs: each forward has a turn of its own.
    let ticks = 0;
    const tick = setInterval(() => ticks++, 0);
    await Promise.all([0, 1, 2, 3].map(() => judge.judge(lease, start, r.delta)));
    clearInterval(tick);
    expect(ticks).toBeGreaterThanOrEqual(4);
  });

  it('a sparse delta refused by the score alone costs penalty points, not a ban: 4 in a row ban, accepted deltas forgive', () => {
    expect(scoreFailurePenalty('sparse')).toBe(4);
    for (const c of ['none', 'fp16', 'int8'] as const) expect(scoreFailurePenalty(c)).toBe(0); // banned at once
    const rep = new Reputation();
    const why = 'its delta raises the loss';
    // An honest sparse worker failing now and then, between accepted deltas: never banned.
    for (let round = 0; round < 20; round++) {
      if (round % 3 === 0) expect(rep.addPenalty('honest', scoreFailurePenalty('sparse'), why).ban).toBe(false);
      else for (let k = 0; k < 2; k++) rep.recordAccepted('honest');
    }
    expect(rep.isBanned('honest')).toBe(false);
    // An attacker failing every round: banned at its 4th refusal.
    const verdicts = [1, 2, 3, 4].map(() => rep.addPenalty('flipper', scoreFailurePenalty('sparse'), why).ban);
    expect(verdicts).toEqual([false, false, false, true]);
    expect(rep.isBanned('flipper')).toBe(true);
  });

  it('deltas judged at the same time get the verdicts they get one by one (the judge backend holds one set of weights)', async () => {
    const leaseOf = (first: number): RoundLease => {
      const rows = Array.from({ length: H * B }, (_, i) => ({ epoch: 0, id: first + i }));
      const m = buildMicroBatch(data, rows.map((x) => x.id)).mask;
      return { id: `n.r0.${first}`, round: 0, version: 0, workerId: `w${first}`, H, B, rows, tokens: m.reduce((a, x) => a + x, 0), issuedAt: 0, expiresAt: 1e12 };
    };
    const cases = await Promise.all([0, 8, 16].map(async (first, k) => {
      const x = buildMicroBatch(data, Array.from({ length: H * B }, (_, i) => first + i));
      const start = initParameters(model, 10 + k);
      const r = await runRound(new HostInnerEngine(createCpuBackend(model), buildParameterTable(model)), start,
        { B, T: x.T, inputs: x.inputs, targets: x.targets, mask: x.mask }, { ...hyper, lrs: [3e-3, 3e-3, 3e-3, 3e-3] });
      return { lease: leaseOf(first), start, delta: k === 2 ? r.delta.map((v) => 1e3 * v) : r.delta };
    }));
    const one = new DeltaJudge(model, data, 1e9);
    const alone = [];
    for (const c of cases) alone.push(await one.judge(c.lease, c.start, c.delta));
    const together = await Promise.all(cases.map((c) => new DeltaJudge(model, data, 1e9)).slice(0, 1).flatMap((j) => cases.map((c) => j.judge(c.lease, c.start, c.delta))));
    expect(together).toEqual(alone);
    expect(alone.map((v) => v.ok)).toEqual([true, true, false]);
    // On scoring threads (--judge-threads 2; the coordinator's default is at least 1): the same
    // verdicts, losses bit for bit (the same CPU code on a copy of the same weights), all at once,
    // and a lease prepared after its delta arrived is judged too.
    const threaded = new DeltaJudge(model, data, 1e9, 2);
    try {
      expect(threaded.threads).toBe(2);
      const onThreads = await Promise.all(cases.map((c) => threaded.judge(c.lease, c.start, c.delta)));
      expect(onThreads).toEqual(alone);
      const late = threaded.judge(cases[0].lease, cases[0].start, cases[0].delta);
      threaded.prepare(cases[0].lease, cases[0].start);
      expect(await late).toEqual(alone[0]);
      // prepare() first (the usual order): its loss at the start weights is the one used.
      threaded.prepare(cases[1].lease, cases[1].start);
      expect(await threaded.judge(cases[1].lease, cases[1].start, cases[1].delta)).toEqual(alone[1]);
    } finally {
      await threaded.close();
    }
    await expect(threaded.judge(cases[0].lease, cases[0].start, cases[0].delta)).rejects.toMatchObject({ code: 'ERR_VERIFY_CLOSED' });
  }, 60_000);
});
