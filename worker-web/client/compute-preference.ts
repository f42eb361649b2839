// The replica compute step for a preference task (--objective dpo, docs/dpo.md): the task's rows
// are pairs (chosen, rejected) with the reference's sequence log-probs; each micro-batch of whole
// pairs gets the DPO loss and gradient of shared/model/dpo.ts (one forward for the margins, one
// weighted forward+backward), and the micro-batches are combined weighted by their pair counts,
// so the result is the gradient of the mean DPO loss over the task's pairs. `tokens` = pairs.

import type { GradientResult, TrainingBackend } from '../../shared/backend.ts';
import { dpoForwardBackward } from '../../shared/model/dpo.ts';
import { l2Norm } from '../../shared/optim/clip.ts';
import type { TaskMsg } from '../../shared/protocol/messages.ts';
import { rowsOf } from './task-rows.ts';

export async function computePreferenceTask(backend: TrainingBackend, task: TaskMsg, mb: number, fixedShape = false): Promise<GradientResult> {
  const dpo = task.dpo;
  if (!dpo) throw new Error(`task ${task.taskId}: not a preference task (bug)`);
  const pairs = task.B / 2;
  // Whole pairs per micro-batch: a pair's weight depends on both of its rows' log-probs.
  const perBatch = Math.max(1, Math.floor(mb / 2));
  const padTo = fixedShape ? Math.max(mb, 2) : 0;
  let acc: Float32Array | undefined;
  let lossSum = 0;
  let totalMs = 0;
  for (let p0 = 0; p0 < pairs; p0 += perBatch) {
    const n = Math.min(perBatch, pairs - p0);
    if (p0 > 0) await new Promise((r) => setTimeout(r, 0)); // heartbeats and socket I/O between slices
    const batch = rowsOf(task, 2 * p0, 2 * n, fixedShape ? padTo : 2 * n);
    const r = await dpoForwardBackward(backend, { batch, pairs: n, ref: dpo.refLogProbs.subarray(2 * p0, 2 * p0 + 2 * n), beta: dpo.beta });
    totalMs += r.timings.totalMs;
    if (n === pairs) return { ...r, grads: r.grads.slice() };
    acc ??= new Float32Array(r.grads.length);
    for (let i = 0; i < acc.length; i++) acc[i] += r.grads[i] * n;
    lossSum += r.loss * n;
  }
  const grads = acc!;
  for (let i = 0; i < grads.length; i++) grads[i] /= pairs;
  let nonFinite = 0;
  for (let i = 0; i < grads.length; i++) if (!Number.isFinite(grads[i])) nonFinite++;
  return { loss: lossSum / pairs, tokens: pairs, grads, gradNorm: l2Norm(grads), nonFinite, timings: { totalMs } };
}
