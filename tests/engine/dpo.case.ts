// DPO conformance cases (issue 16), part of the suite every backend runs (conformance.case.ts:
// cpu, webgpu-node, webgpu-chromium). Against the PyTorch DPO fixture (tests/reference/
// dpo-fixture.ts): the sequence log-probs of the policy and of the reference, then the DPO loss
// and every gradient through shared/model/dpo.ts (one forward for the margins, one weighted
// backward) within 1e-4; rows past the pairs (padding) weigh nothing; two runs, identical bits.
// Browser-safe: no Node imports.

import type { MicroBatch, TrainingBackend } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { dpoForwardBackward } from '../../shared/model/dpo.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { parseDpoFixture, type DpoFixture } from '../reference/dpo-fixture.ts';

interface DpoEnv {
  label: string;
  createBackend(config: ModelConfig): Promise<TrainingBackend>;
  loadDpoFixture: () => Promise<ArrayBuffer | Uint8Array>;
}

type Close = (what: string, got: ArrayLike<number>, want: ArrayLike<number>, rtol?: number, atol?: number) => void;
type SameBits = (what: string, a: Float32Array, b: Float32Array) => void;

/** The first `rows` rows of `b`. */
function firstRows(b: MicroBatch, rows: number): MicroBatch {
  const n = rows * b.T;
  return { B: rows, T: b.T, inputs: b.inputs.slice(0, n), targets: b.targets.slice(0, n), mask: b.mask.slice(0, n) };
}

export function dpoCases(env: DpoEnv, assertClose: Close, assertSameBits: SameBits) {
  let fx: DpoFixture | undefined;
  const fixture = async () => (fx ??= parseDpoFixture(await env.loadDpoFixture()));
  return [{
    name: `${env.label}: DPO vs PyTorch fixture (sequence log-probs, loss, grads within 1e-4), padding rows, determinism`,
    run: async () => {
      const f = await fixture();
      const s = f.setup;
      const b = await env.createBackend(s.config);
      try {
        await b.setParams(s.reference);
        assertClose('dpo reference sequence log-probs', await b.sequenceLogProbs(s.batch), f.refLogProbs, 1e-4, 1e-5);
        await b.setParams(s.policy);
        assertClose('dpo policy sequence log-probs', await b.sequenceLogProbs(s.batch), f.policyLogProbs, 1e-4, 1e-5);
        // Reference log-probs as the coordinator sends them (float32 on the wire).
        const ref = Float32Array.from(f.refLogProbs);
        const r1 = await dpoForwardBackward(b, { batch: s.batch, pairs: s.pairs, ref, beta: s.beta });
        assertClose('dpo loss', [r1.loss], [f.loss], 1e-4, 0);
        if (r1.tokens !== s.pairs) throw new Error(`dpo tokens: got ${r1.tokens}, expected the ${s.pairs} pairs`);
        assertClose('dpo grads', r1.grads, f.grads, 1e-4, 1e-6);
        if (r1.nonFinite !== 0) throw new Error(`dpo: ${r1.nonFinite} non-finite gradient values`);
        // Rows past the pairs (here the third pair's) weigh 0: the same as a batch without them,
        // computed by the CPU reference (a fixed-shape worker pads micro-batches like this).
        const r2 = await dpoForwardBackward(b, { batch: s.batch, pairs: 2, ref: ref.subarray(0, 4), beta: s.beta });
        const cpu = createCpuBackend(s.config);
        await cpu.setParams(s.policy);
        const want = await dpoForwardBackward(cpu, { batch: firstRows(s.batch, 4), pairs: 2, ref: ref.subarray(0, 4), beta: s.beta });
        assertClose('dpo loss, 2 pairs + 2 zero-weight rows', [r2.loss], [want.loss], 1e-4, 0);
        assertClose('dpo grads, 2 pairs + 2 zero-weight rows', r2.grads, want.grads, 1e-4, 1e-6);
        const r3 = await dpoForwardBackward(b, { batch: s.batch, pairs: s.pairs, ref, beta: s.beta });
        assertSameBits('dpo determinism grads', r1.grads, r3.grads);
      } finally {
        b.dispose();
      }
    },
  }];
}
