// A verification thread (started by verify-pool.ts through coordinator/threads/ts-worker.ts): one
// CpuBackend of the run's model, re-computing (params, micro-batch) jobs one at a time and
// answering with the comparison figures only (two numbers instead of a gradient back).
//
// Parameters arrive as a SharedArrayBuffer per version (the coordinator copies each version once);
// they are loaded into the backend only when the version key changes, so every check of one
// version reuses them. A pipeline share (kind 'share') re-runs each stage on the CPU stage backend
// (stage-recompute.ts) straight from the shared parameters. A loss job (kind 'loss') scores a
// DiLoCo delta: the loss of the lease's score rows at the parameters moved by -delta or +delta.

import { parentPort, workerData } from 'node:worker_threads';
import { CpuBackend } from '../../shared/model/cpu-backend.ts';
import { dpoForwardBackward } from '../../shared/model/dpo.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { recomputeShare } from './stage-recompute.ts';
import { compareResult } from './verify-compare.ts';
import type { LossRequest, ShareVerifyRequest, VerifyReply, VerifyRequest } from './verify-pool.ts';

const port = parentPort;
if (!port) throw new Error('verify-worker.ts runs as a worker thread (coordinator/security/verify-pool.ts)');
const model = (workerData as { model: ModelConfig }).model;
const backend = new CpuBackend(model);
let paramsKey = -1;

port.on('message', (m: VerifyRequest | ShareVerifyRequest | LossRequest) => {
  void ('kind' in m ? (m.kind === 'loss' ? answerLoss(m) : answerShare(m)) : answer(m)).then((r) => port.postMessage(r));
});

/** A DiLoCo delta's loss score: the batch's loss at params + sign x delta (delta-judge.ts). */
async function answerLoss(m: LossRequest): Promise<VerifyReply> {
  try {
    const t0 = performance.now();
    if (m.sign === 0) {
      if (m.paramsKey !== paramsKey) {
        paramsKey = -1;
        await backend.setParams(new Float32Array(m.params));
        paramsKey = m.paramsKey;
      }
    } else {
      if (!m.delta) throw new Error('loss job: sign without a delta');
      const p = new Float32Array(m.params);
      const d = new Float32Array(m.delta);
      if (d.length !== p.length) throw new Error(`loss job: delta of ${d.length} values for ${p.length} parameters`);
      // The same float32 operations as the event-loop path (start[i] - delta[i], start[i] + delta[i]).
      const moved = new Float32Array(p.length);
      if (m.sign < 0) for (let i = 0; i < moved.length; i++) moved[i] = p[i] - d[i];
      else for (let i = 0; i < moved.length; i++) moved[i] = p[i] + d[i];
      paramsKey = -1; // the backend no longer holds the version's parameters
      backend.adoptParams(moved);
    }
    const r = await backend.forward({ B: m.B, T: m.T, inputs: m.inputs, targets: m.targets, mask: m.mask });
    return { id: m.id, loss: r.loss, ms: performance.now() - t0 };
  } catch (e) {
    return { id: m.id, error: (e as Error).message ?? String(e) };
  }
}

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
