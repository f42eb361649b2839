// Pipeline-stage cases of the engine conformance suite, framework-free like conformance.case.ts and
// run by the same runners (Node: conformance.node.test.ts for cpu and webgpu-node; Chromium:
// browser/entry.ts). Three stage backends [0,1) [1,2) [2,3) of one environment, chained as the
// pipeline does (forward down, forwardBackward up with dIn as the previous stage's dOut), must
// reproduce the PyTorch fixture: logits, loss, and every gradient once the stage gradients are
// summed into one full vector by scatterAddStage (the tied wte from the first and the last stage).
// Each stage's activations and dIn are also checked against the CPU reference stages; re-runs give
// identical bits (the first stage's wte gradient is written, not accumulated), and an all-masked
// micro-batch gives zeros.
// DPO on the last stage (--objective dpo through a pipeline, docs/dpo.md): the same three stages on
// the PyTorch DPO fixture's pairs, the head given the pairs' reference log-probs and beta
// (StageInput.dpo), must give the fixture's DPO loss and every gradient (summed) within 1e-4; with
// the last pair as padding (masked out, no reference value) the head equals the CPU head. Same
// model and shapes as the whole-model DPO case, so on WebGPU most pipelines are already compiled.

import type { StageBackend, StageGradientResult, StageInput } from '../../shared/backend.ts';
import { createCpuStageBackend } from '../../shared/model/cpu-stage-backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { buildStageTable, checkStageCover, gatherStage, scatterAddStage, type StageSpec } from '../../shared/model/stage.ts';
import { assertClose, assertSameBits, type ConformanceCase, type ConformanceEnv } from './conformance.case.ts';
import { parseFixtureBytes, type FixtureData } from './fixture-bytes.ts';
import { parseDpoFixture } from '../reference/dpo-fixture.ts';

export interface StageConformanceEnv extends ConformanceEnv {
  /** A fresh stage backend on the environment's device (the case disposes it). */
  createStageBackend(config: ModelConfig, spec: StageSpec): Promise<StageBackend>;
}

/** What one chain of stages computed for one micro-batch. */
interface ChainRun {
  acts: Float32Array[]; // acts[i]: output of stage i (i < last)
  logits: Float32Array;
  results: StageGradientResult[]; // per stage
}

async function runChain(stages: StageBackend[], fx: FixtureData): Promise<ChainRun> {
  const { B, T } = fx;
  const mask = Uint8Array.from(fx.mask);
  const input = (i: number, acts: Float32Array[]): StageInput => (i === 0
    ? { B, T, inputs: fx.inputs, targets: fx.targets, mask }
    : { B, T, acts: acts[i - 1], targets: fx.targets, mask });
  const acts: Float32Array[] = [];
  for (let i = 0; i < stages.length - 1; i++) acts.push(await stages[i].forward(input(i, acts)));
  const last = stages.length - 1;
  const logits = await stages[last].forward(input(last, acts));
  const results: StageGradientResult[] = new Array(stages.length);
  results[last] = await stages[last].forwardBackward(input(last, acts));
  for (let i = last - 1; i >= 0; i--) results[i] = await stages[i].forwardBackward(input(i, acts), results[i + 1].dIn);
  return { acts, logits, results };
}

export function stageCases(env: StageConformanceEnv): ConformanceCase[] {
  return [...lmStageCases(env), ...dpoStageCases(env)];
}

function dpoStageCases(env: StageConformanceEnv): ConformanceCase[] {
  const load = env.loadDpoFixture;
  if (!load) return [];
  const specs: StageSpec[] = [{ from: 0, to: 1 }, { from: 1, to: 2 }, { from: 2, to: 3 }];
  return [{
    name: `${env.label}: DPO on the last of stages [0,1) [1,2) [2,3) vs the PyTorch DPO fixture (loss, every gradient summed, within 1e-4); padding pair vs the CPU head`,
    run: async () => {
      const f = parseDpoFixture(await load());
      const { config, batch, policy, pairs, beta } = f.setup;
      const { B, T } = batch;
      const tables = specs.map((s) => buildStageTable(config, s));
      const stages: StageBackend[] = [];
      const cpuHead = createCpuStageBackend(config, specs[2]);
      try {
        for (let i = 0; i < specs.length; i++) {
          stages.push(await env.createStageBackend(config, specs[i]));
          await stages[i].setParams(gatherStage(tables[i], policy));
        }
        await cpuHead.setParams(gatherStage(tables[2], policy));
        const refLogProbs = Float32Array.from(f.refLogProbs); // float32, as on the wire
        const ins: StageInput[] = [{ B, T, inputs: batch.inputs }];
        for (let i = 0; i < 2; i++) ins.push({ B, T, acts: await stages[i].forward(ins[i]) });
        const headIn: StageInput = { ...ins[2], targets: batch.targets, mask: batch.mask, dpo: { beta, refLogProbs } };
        const head = await stages[2].forwardBackward(headIn);
        assertClose('dpo stage loss', [head.loss!], [f.loss], 1e-4, 0);
        if (head.tokens !== pairs) throw new Error(`dpo stage tokens: got ${head.tokens}, expected the ${pairs} pairs`);
        const mid = await stages[1].forwardBackward(ins[1], head.dIn);
        const first = await stages[0].forwardBackward(ins[0], mid.dIn);
        const full = new Float32Array(policy.length);
        [first, mid, head].forEach((r, i) => {
          if (r.nonFinite !== 0) throw new Error(`dpo stage ${i}: ${r.nonFinite} non-finite gradient values`);
          scatterAddStage(tables[i], r.grads, full);
        });
        assertClose('dpo stage grads (summed)', full, f.grads, 1e-4, 1e-6);
        // The last pair as padding (a short last micro-batch): masked out, no reference values.
        const mask = Uint8Array.from(batch.mask);
        mask.fill(0, 4 * T);
        const padIn: StageInput = { ...headIn, mask, dpo: { beta, refLogProbs: refLogProbs.slice(0, 4) } };
        const got = await stages[2].forwardBackward(padIn);
        const want = await cpuHead.forwardBackward(padIn);
        if (got.tokens !== 2) throw new Error(`dpo stage, 2 pairs + padding: tokens ${got.tokens}, expected 2`);
        assertClose('dpo stage loss, 2 pairs + padding', [got.loss!], [want.loss!], 1e-4, 0);
        assertClose('dpo stage grads, 2 pairs + padding', got.grads, want.grads, 1e-4, 1e-6);
        assertClose('dpo stage dIn, 2 pairs + padding', got.dIn!, want.dIn!, 1e-3, 1e-7);
      } finally {
        for (const s of [...stages, cpuHead]) s.dispose();
      }
    },
  }];
}

function lmStageCases(env: StageConformanceEnv): ConformanceCase[] {
  if (!env.loadFixture) return [];
  const specs: StageSpec[] = [{ from: 0, to: 1 }, { from: 1, to: 2 }, { from: 2, to: 3 }];
  return [{
    name: `${env.label}: stages [0,1) [1,2) [2,3) chained vs PyTorch fixture (logits, loss, every gradient summed by scatterAddStage, within 1e-4), acts and dIn vs CPU stages`,
    run: async () => {
      const f = parseFixtureBytes(await env.loadFixture!());
      if (f.config.nLayer !== 3) throw new Error(`stage case: fixture has ${f.config.nLayer} blocks, the case splits 3`);
      checkStageCover(f.config, specs);
      const tables = specs.map((s) => buildStageTable(f.config, s));
      const stages: StageBackend[] = [];
      const cpu = specs.map((s) => createCpuStageBackend(f.config, s));
      try {
        for (let i = 0; i < specs.length; i++) {
          stages.push(await env.createStageBackend(f.config, specs[i]));
          await stages[i].setParams(gatherStage(tables[i], f.params));
          await cpu[i].setParams(gatherStage(tables[i], f.params));
        }
        const got = await runChain(stages, f);
        const ref = await runChain(cpu, f);
        got.acts.forEach((a, i) => assertClose(`stage ${i} output`, a, ref.acts[i], 1e-4, 1e-5));
        assertClose('stage logits', got.logits, f.logits, 1e-4, 1e-5);
        const head = got.results[specs.length - 1];
        assertClose('stage loss', [head.loss!], [f.loss], 1e-4, 0);
        let tokens = 0;
        for (const m of f.mask) tokens += m ? 1 : 0;
        if (head.tokens !== tokens) throw new Error(`stage tokens: got ${head.tokens}, expected ${tokens}`);
        if (got.results[0].dIn !== undefined || got.results[0].loss !== undefined) throw new Error('first stage: dIn/loss must be absent');
        for (let i = 1; i < specs.length; i++) assertClose(`stage ${i} dIn`, got.results[i].dIn!, ref.results[i].dIn!, 1e-3, 1e-7);
        const full = new Float32Array(f.params.length);
        got.results.forEach((r, i) => {
          if (r.nonFinite !== 0) throw new Error(`stage ${i}: ${r.nonFinite} non-finite gradient values`);
          let ss = 0;
          for (const g of r.grads) ss += g * g;
          assertClose(`stage ${i} grad norm`, [r.gradNorm], [Math.sqrt(ss)], 1e-4, 0);
          scatterAddStage(tables[i], r.grads, full);
        });
        assertClose('stage grads (summed)', full, f.grads, 1e-4, 1e-6);
        let ss = 0;
        for (const g of full) ss += g * g;
        assertClose('stage grad norm (summed)', [Math.sqrt(ss)], [f.gradNorms[0]], 1e-4, 0);

        // A middle stage without dOut is refused and changes nothing: the same call again gives the same bits.
        let code = '';
        try {
          await stages[1].forwardBackward({ B: f.B, T: f.T, acts: got.acts[0] });
        } catch (e) {
          code = (e as { code?: string }).code ?? String(e);
        }
        if (code !== 'ERR_STAGE_INPUT') throw new Error(`middle stage without dOut: expected ERR_STAGE_INPUT, got ${code || 'no error'}`);
        const again = await stages[1].forwardBackward({ B: f.B, T: f.T, acts: got.acts[0] }, head.dIn);
        assertSameBits('middle stage grads, run 2', again.grads, got.results[1].grads);
        assertSameBits('middle stage dIn, run 2', again.dIn!, got.results[1].dIn!);
        // The first stage writes its wte gradient (no LM head part to add to): a second step must not accumulate.
        const first2 = await stages[0].forwardBackward({ B: f.B, T: f.T, inputs: f.inputs }, got.results[1].dIn);
        assertSameBits('first stage grads, run 2', first2.grads, got.results[0].grads);
        // No masked-in position: the head's loss, tokens, gradient and dIn are all zero.
        const none = await stages[2].forwardBackward({ B: f.B, T: f.T, acts: got.acts[1], targets: f.targets, mask: new Uint8Array(f.B * f.T) });
        if (none.loss !== 0 || none.tokens !== 0 || none.gradNorm !== 0) {
          throw new Error(`all-masked head stage: loss ${none.loss}, tokens ${none.tokens}, norm ${none.gradNorm}, expected 0, 0, 0`);
        }
        if (!none.dIn!.every((v) => v === 0)) throw new Error('all-masked head stage: dIn is not all zeros');
      } finally {
        for (const s of [...stages, ...cpu]) s.dispose();
      }
    },
  }];
}
