// The frozen reference of --objective dpo (docs/dpo.md): its sequence log-probs of every pair's
// chosen and rejected rows, computed ONCE per pair at start on a worker thread (the CPU
// reference, reference-worker.ts) and kept in memory; each task carries its pairs' values, so
// workers never hold a second model. The reference weights are `--reference init` (the starting
// weights: the --init-from export, else the seeded init; never a checkpoint of this run, so a
// resumed run has the same reference) or `--reference DIR` (an exported model directory).

import type { PreferenceDataset } from '../../shared/data/preference-data.ts';
import { AppError } from '../../shared/errors.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { startTsWorker } from '../threads/ts-worker.ts';
import type { ReferenceJob, ReferenceReply } from './reference-worker.ts';

/** Pairs per forward on the reference thread. */
const PAIRS_PER_BATCH = 32;

export interface ReferenceLogProbs {
  /** 2 per train pair: chosen, rejected. */
  train: Float32Array;
  /** 2 per held-out pair. */
  heldOut: Float32Array;
  /** Where the reference weights came from, for logs and status. */
  source: string;
  /** Wall time of the computation, ms. */
  ms: number;
}

function batches(ds: PreferenceDataset, split: 'train' | 'heldOut'): ReferenceJob['batches'] {
  const n = split === 'train' ? ds.size : ds.heldOut.size;
  const out: ReferenceJob['batches'] = [];
  for (let s = 0; s < n; s += PAIRS_PER_BATCH) {
    const ids = Array.from({ length: Math.min(PAIRS_PER_BATCH, n - s) }, (_, i) => s + i);
    const b = ds.pairBatch(ids, split);
    out.push({ B: b.B, T: b.T, inputs: b.inputs, targets: b.targets, mask: b.mask });
  }
  return out;
}

/** Runs the reference over every pair of `ds` on a worker thread; resolves with the log-probs. */
export async function computeReference(model: ModelConfig, params: Float32Array, ds: PreferenceDataset, source: string): Promise<ReferenceLogProbs> {
  const t0 = Date.now();
  const job: ReferenceJob = { params: new Float32Array(params), batches: [...batches(ds, 'train'), ...batches(ds, 'heldOut')] };
  const thread = startTsWorker(new URL('./reference-worker.ts', import.meta.url), { model });
  let reply: ReferenceReply;
  try {
    reply = await new Promise<ReferenceReply>((resolve, reject) => {
      thread.once('message', resolve);
      thread.once('error', reject);
      thread.once('exit', (code) => reject(new Error(`exit code ${code}`)));
      thread.postMessage(job, [job.params.buffer as ArrayBuffer]);
    });
  } catch (e) {
    throw new AppError('ERR_DPO_REFERENCE', `dpo reference: the thread computing the reference log-probs stopped: ${(e as Error).message}`, 500);
  } finally {
    void thread.terminate();
  }
  if ('error' in reply) throw new AppError('ERR_DPO_REFERENCE', `dpo reference: ${reply.error}`, 500);
  const all = reply.logProbs;
  const train = Float32Array.from(all.subarray(0, 2 * ds.size));
  const heldOut = Float32Array.from(all.subarray(2 * ds.size));
  if (heldOut.length !== 2 * ds.heldOut.size) throw new AppError('ERR_DPO_REFERENCE', `dpo reference: ${all.length} log-probs for ${ds.size + ds.heldOut.size} pairs (bug)`, 500);
  return { train, heldOut, source, ms: Date.now() - t0 };
}
