// A verification thread (started by verify-pool.ts through coordinator/threads/ts-worker.ts): one
// CpuBackend of the run's model, re-computing (params, micro-batch) jobs one at a time and
// answering with the comparison figures only (two numbers instead of a gradient back).
//
// Parameters arrive as a SharedArrayBuffer per version (the coordinator copies each version once);
// they are loaded into the backend only when the version key changes, so every check of one
// version reuses them. A pipeline share (kind 'share') re-runs each stage on the CPU stage backend
// (stage-recompute.ts) straight from the shared parameters.

import { parentPort, workerData } from 'node:worker_threads';
import { CpuBackend } from '../../shared/model/cpu-backend.ts';
import { dpoForwardBackward } from '../../shared/model/dpo.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { recomputeShare } from './stage-recompute.ts';
import { compareResult } from './verify-compare.ts';
import type { ShareVerifyRequest, VerifyReply, VerifyRequest } from './verify-pool.ts';

const port = parentPort;
if (!port) throw new Error('verify-worker.ts runs as a worker thread (coordinator/security/verify-pool.ts)');
const model = (workerData as { model: ModelConfig }).model;
const backend = new CpuBackend(model);
let paramsKey = -1;

port.on('message', (m: VerifyRequest | ShareVerifyRequest) => {
  void ('kind' in m ? answerShare(m) : answer(m)).then((r) => port.postMessage(r));
});

async function answerShare(m: ShareVerifyRequest): Promise<VerifyReply> {
  try {
    const t0 = performance.now();
    const mismatch = await recomputeShare(model, m.check, new Float32Array(m.params), m.tolerance);
    return { id: m.id, mismatch, ms: performance.now() - t0 };
  } catch (e) {
    return { id: m.id, error: (e as Error).message ?? String(e) };
  }
}

async function answer(m: VerifyRequest): Promise<VerifyReply> {
  try {
    if (m.paramsKey !== paramsKey) {
      paramsKey = -1; // a failed load must not leave the previous version looking current
      await backend.setParams(new Float32Array(m.params));
      paramsKey = m.paramsKey;
    }
    const t0 = performance.now();
    const batch = { B: m.B, T: m.T, inputs: m.inputs, targets: m.targets, mask: m.mask };
    // --objective dpo: the same DPO step the worker ran (shared/model/dpo.ts), with the task's reference values.
    const ref = m.dpo
      ? await dpoForwardBackward(backend, { batch, pairs: m.B / 2, ref: m.dpo.refLogProbs, beta: m.dpo.beta })
      : await backend.forwardBackward(batch);
    const f = compareResult(ref.grads, ref.loss, m.grads, m.loss);
    return { id: m.id, ...f, ms: performance.now() - t0 };
  } catch (e) {
    return { id: m.id, error: (e as Error).message ?? String(e) };
  }
}
