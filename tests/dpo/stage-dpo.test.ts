// DPO through pipeline stages (docs/dpo.md "Pipeline stages"): the head stage computes the DPO
// objective of its micro-batch's pairs itself (CpuStageBackend with StageInput.dpo: its sequence
// log-probs, the pair weights, one weighted backward), the stages below it only relay dIn. Three
// CPU stages chained as the pipeline runs them must give the whole model's DPO loss and gradient
// (shared/model/dpo.ts dpoForwardBackward on the CPU backend) within 1e-6: the whole batch in one
// micro-batch, and cut into micro-batches of whole pairs (the last padded) summed by pairs, as the
// coordinator assembles a share. Bad pair fields are refused with a named code, on the stage and
// on the wire (validateHop). And the coordinator's side in process: a preference share relayed by
// ShareRun (cut into micro-batches of whole pairs) through three CPU stages assembles to the whole
// model's DPO gradient, its CPU re-computation (security/stage-recompute.ts) agrees, and names the head stage
// when the head's gradient or loss is not the DPO one.
import { beforeAll, describe, expect, it } from 'vitest';
import type { MicroBatch, StageBackend, StageDpo, StageInput } from '../../shared/backend.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import { dpoForwardBackward } from '../../shared/model/dpo.ts';
import { buildStageTable, gatherStage, scatterAddStage, type StageSpec } from '../../shared/model/stage.ts';
import { packActivations, unpackActivations } from '../../shared/pipeline/activation-codec.ts';
import { validateHop } from '../../shared/protocol/stage.ts';
import { ShareRun, type Outgoing } from '../../coordinator/server/pipeline-relay.ts';
import { recomputeShare } from '../../coordinator/security/stage-recompute.ts';
import { shareCheckOf } from '../../coordinator/server/stage-verify.ts';
import { relDiff } from '../coordinator/pipeline-run.ts';
import type { Lease } from '../../coordinator/train/step-work.ts';
import { dpoFixtureSetup } from '../reference/dpo-fixture.ts';

const s = dpoFixtureSetup();
const specs: StageSpec[] = [{ from: 0, to: 1 }, { from: 1, to: 2 }, { from: 2, to: 3 }];
const tables = specs.map((sp) => buildStageTable(s.config, sp));

/** Rows [r0, r0 + rows) of the batch, padded with mask-0 rows to `B` (as pipeline-relay.ts cuts a share). */
function cut(b: MicroBatch, r0: number, rows: number, B: number): MicroBatch {
  const T = b.T;
  const out: MicroBatch = { B, T, inputs: new Int32Array(B * T), targets: new Int32Array(B * T), mask: new Uint8Array(B * T) };
  out.inputs.set(b.inputs.subarray(r0 * T, (r0 + rows) * T));
  out.targets.set(b.targets.subarray(r0 * T, (r0 + rows) * T));
  out.mask.set(b.mask.subarray(r0 * T, (r0 + rows) * T));
  return out;
}

/** One micro-batch through the chain: forward down, the head's DPO forward+backward, backward up. */
async function chain(stages: StageBackend[], mb: MicroBatch, dpo: StageDpo) {
  const { B, T } = mb;
  const inp = (i: number, acts?: Float32Array): StageInput => ({
    B, T, ...(i === 0 ? { inputs: mb.inputs } : { acts }),
    ...(i === stages.length - 1 ? { targets: mb.targets, mask: mb.mask, dpo } : {}),
  });
  const ins: StageInput[] = [inp(0)];
  for (let i = 0; i < stages.length - 1; i++) ins.push(inp(i + 1, await stages[i].forward(ins[i])));
  const last = stages.length - 1;
  const head = await stages[last].forwardBackward(ins[last]);
  const grads: Float32Array[] = new Array(stages.length);
  grads[last] = head.grads;
  let dIn = head.dIn;
  for (let i = last - 1; i >= 0; i--) {
    const r = await stages[i].forwardBackward(ins[i], dIn);
    grads[i] = r.grads;
    dIn = r.dIn;
  }
  return { loss: head.loss!, tokens: head.tokens!, grads };
}

describe('DPO on the head stage (CPU)', () => {
  let ref: Float32Array;
  let whole: Awaited<ReturnType<typeof dpoForwardBackward>>;
  let lm: Awaited<ReturnType<StageBackend['forwardBackward']>>;
  const stages = specs.map((sp) => createCpuStageBackend(s.config, sp));
  beforeAll(async () => {
    const cpu = createCpuBackend(s.config);
    await cpu.setParams(s.reference);
    ref = Float32Array.from(await cpu.sequenceLogProbs(s.batch));
    await cpu.setParams(s.policy);
    whole = await dpoForwardBackward(cpu, { batch: s.batch, pairs: s.pairs, ref, beta: s.beta });
    lm = await cpu.forwardBackward(s.batch);
    for (let i = 0; i < stages.length; i++) await stages[i].setParams(gatherStage(tables[i], s.policy));
  });

  it('3 stages, one micro-batch: the whole model\'s DPO loss and gradient within 1e-6; tokens = pairs', async () => {
    const r = await chain(stages, s.batch, { beta: s.beta, refLogProbs: ref });
    expect(r.tokens).toBe(s.pairs);
    expect(Math.abs(r.loss - whole.loss) / whole.loss).toBeLessThan(1e-6);
    const full = new Float32Array(s.policy.length);
    r.grads.forEach((g, i) => scatterAddStage(tables[i], g, full));
    expect(relDiff(full, whole.grads)).toBeLessThan(1e-6);
    // The DPO gradient is not the LM gradient of the same rows (the comparison can fail).
    expect(relDiff(lm.grads, whole.grads)).toBeGreaterThan(0.5);
  });

  it('micro-batches of whole pairs (2 pairs, then 1 pair + 2 padding rows) summed by pairs equal the whole batch (1e-6)', async () => {
    const full = new Float32Array(s.policy.length);
    let loss = 0;
    let pairs = 0;
    for (const [p0, n] of [[0, 2], [2, 1]]) {
      const mb = cut(s.batch, 2 * p0, 2 * n, 4);
      const r = await chain(stages, mb, { beta: s.beta, refLogProbs: ref.slice(2 * p0, 2 * p0 + 2 * n) });
      expect(r.tokens).toBe(n);
      r.grads.forEach((g, i) => scatterAddStage(tables[i], g, full, r.tokens));
      loss += r.loss * r.tokens;
      pairs += r.tokens;
    }
    for (let i = 0; i < full.length; i++) full[i] /= pairs;
    expect(Math.abs(loss / pairs - whole.loss) / whole.loss).toBeLessThan(1e-6);
    expect(relDiff(full, whole.grads)).toBeLessThan(1e-6);
  });

  it('refuses bad pairs with ERR_DPO_BATCH (stage) and named codes on the wire, changing nothing', async () => {
    const head = stages[2];
    const acts = new Float32Array(s.batch.B * s.batch.T * s.config.nEmbd);
    const base: StageInput = { B: s.batch.B, T: s.batch.T, acts, targets: s.batch.targets, mask: s.batch.mask };
    const code = async (dpo: StageDpo) => head.forwardBackward({ ...base, dpo }).then(() => 'none', (e) => (e as { code: string }).code);
    expect(await code({ beta: s.beta, refLogProbs: ref.slice(0, 3) })).toBe('ERR_DPO_BATCH'); // odd: half a pair
    expect(await code({ beta: 0, refLogProbs: ref })).toBe('ERR_DPO_BATCH');
    expect(await code({ beta: s.beta, refLogProbs: new Float32Array(8) })).toBe('ERR_DPO_BATCH'); // 4 pairs > 6 rows / 2
    expect(await code({ beta: s.beta, refLogProbs: ref.map((v, i) => (i === 1 ? 0.5 : v)) })).toBe('ERR_DPO_BATCH'); // log-prob > 0
    // A hop to the head (here of a one-stage pipeline: token ids in): tokens must be the pairs,
    // the rows past the pairs masked out, beta positive.
    const hop = { taskId: 'x.1', micro: 0, kind: 'fwd', B: s.batch.B, T: s.batch.T, tokens: 3, inputs: s.batch.inputs, targets: s.batch.targets, mask: s.batch.mask, dpo: { beta: s.beta, refLogProbs: ref } };
    const one: StageSpec = { from: 0, to: s.config.nLayer };
    const ok = validateHop(hop, s.config, one);
    expect(ok.ok && ok.value.dpo?.refLogProbs.length).toBe(6);
    const wrongTokens = validateHop({ ...hop, tokens: 40 }, s.config, one);
    expect(!wrongTokens.ok && wrongTokens.code).toBe('TOKENS_MISMATCH');
    const padded = validateHop({ ...hop, dpo: { beta: s.beta, refLogProbs: ref.slice(0, 4) }, tokens: 2 }, s.config, one);
    expect(!padded.ok && padded.code).toBe('OUT_OF_RANGE'); // rows 4, 5 are masked in but past the pairs
    const badBeta = validateHop({ ...hop, dpo: { beta: -1, refLogProbs: ref } }, s.config, one);
    expect(!badBeta.ok && badBeta.code).toBe('OUT_OF_RANGE');
    // The refused calls changed nothing: the head gives the same bits again.
    const r1 = await head.forwardBackward({ ...base, dpo: { beta: s.beta, refLogProbs: ref } });
    const r2 = await head.forwardBackward({ ...base, dpo: { beta: s.beta, refLogProbs: ref } });
    expect(Buffer.from(r1.grads.buffer).equals(Buffer.from(r2.grads.buffer))).toBe(true);
  });

  it('a preference share relayed by ShareRun assembles to the whole model\'s gradient; re-computation passes it and names a lying head', async () => {
    const lease = { id: 'n.1', step: 0, version: 0, ids: [0, 1, 2] } as unknown as Lease;
    const share = new ShareRun(lease, tables, { ...s.batch, dpo: { beta: s.beta, refLogProbs: ref } }, 4, 2, 0);
    expect(share.micros.map((m) => m.tokens)).toEqual([2, 1]); // pairs; the second is padded to 4 rows
    expect(share.micros[1].batch.B).toBe(4);
    expect(share.tokens).toBe(3);
    const C = s.config.nEmbd;
    const kept = new Map<string, StageInput>();
    const acc = tables.map((t) => new Float32Array(t.total));
    const done = tables.map(() => 0);
    const grad = (st: number, k: number, g: Float32Array) => {
      for (let i = 0; i < g.length; i++) acc[st][i] += k * g[i];
      done[st]++;
    };
    const queue: Outgoing[] = share.admit();
    while (queue.length) {
      const { stage: st, hop } = queue.shift()!;
      const rows = hop.B * hop.T;
      const head = st === tables.length - 1;
      let out: Outgoing[] | { code: string };
      if (hop.kind === 'fwd') {
        const input: StageInput = {
          B: hop.B, T: hop.T, ...(st === 0 ? { inputs: hop.inputs } : { acts: unpackActivations(hop.acts!) }),
          ...(head ? { targets: hop.targets, mask: hop.mask, dpo: hop.dpo } : {}),
        };
        if (head) {
          expect(hop.dpo!.refLogProbs.length).toBe(2 * hop.tokens);
          const r = await stages[st].forwardBackward(input);
          grad(st, r.tokens!, r.grads);
          out = share.onBwd(st, hop.micro, packActivations(r.dIn!, rows, C, 'fp32'), r.dIn!, r.loss, r.tokens, 1);
        } else {
          kept.set(`${st}:${hop.micro}`, input);
          const y = await stages[st].forward(input);
          out = share.onFwd(st, hop.micro, packActivations(y, rows, C, 'fp32'), y, 1);
        }
      } else {
        const r = await stages[st].forwardBackward(kept.get(`${st}:${hop.micro}`)!, unpackActivations(hop.grad!));
        grad(st, hop.tokens, r.grads);
        out = share.onBwd(st, hop.micro, r.dIn ? packActivations(r.dIn, rows, C, 'fp32') : undefined, r.dIn, undefined, undefined, 1);
      }
      if (!Array.isArray(out)) throw new Error(`relay refused: ${out.code}`);
      queue.push(...out);
      // After its last micro-batch, the stage uploads its sum (sum_m pairs_m x g_m) and the pairs.
      if (done[st] === share.micros.length && !share.grads[st]) expect(share.onGrad(st, acc[st], 3)).toBeNull();
    }
    expect(share.complete).toBe(true);
    const a = share.assemble(s.policy.length);
    expect(a.tokens).toBe(3);
    expect(Math.abs(a.loss - whole.loss) / whole.loss).toBeLessThan(1e-6);
    expect(relDiff(a.grads, whole.grads)).toBeLessThan(1e-6);
    expect(await recomputeShare(s.config, shareCheckOf(share), s.policy, 1e-5)).toBeNull();
    // A head that sends a scaled gradient sum, or reports the LM loss of its rows, is named.
    const honest = share.grads[2]!.grads;
    share.grads[2]!.grads = honest.map((g) => 1.5 * g);
    expect((await recomputeShare(s.config, shareCheckOf(share), s.policy, 1e-5))?.stage).toBe(2);
    share.grads[2]!.grads = honest;
    const loss0 = share.micros[0].loss;
    share.micros[0].loss = lm.loss;
    expect((await recomputeShare(s.config, shareCheckOf(share), s.policy, 1e-5))?.message).toMatch(/stage 2 micro-batch 0: loss/);
    share.micros[0].loss = loss0;
    expect(await recomputeShare(s.config, shareCheckOf(share), s.policy, 1e-5)).toBeNull();
  });
});
