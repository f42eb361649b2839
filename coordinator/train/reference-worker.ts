// The thread of reference.ts: one CpuBackend of the run's model at the reference weights, the
// sequence log-probs of every batch of pair rows, answered in one message. Off the coordinator's
// loop so a large preference set does not stall it.

import { parentPort, workerData } from 'node:worker_threads';
import type { MicroBatch } from '../../shared/backend.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { CpuBackend } from '../../shared/model/cpu-backend.ts';

export interface ReferenceJob {
  params: Float32Array;
  batches: MicroBatch[];
}

export type ReferenceReply = { logProbs: Float64Array } | { error: string };

const port = parentPort;
if (port) {
  port.once('message', (job: ReferenceJob) => {
    void run(job).then((r) => port.postMessage(r), (e: unknown) => port.postMessage({ error: (e as Error).message ?? String(e) }));
  });
}

async function run(job: ReferenceJob): Promise<ReferenceReply> {
  const backend = new CpuBackend((workerData as { model: ModelConfig }).model);
  await backend.setParams(job.params);
  const rows = job.batches.reduce((n, b) => n + b.B, 0);
  const out = new Float64Array(rows);
  let o = 0;
  for (const b of job.batches) {
    out.set(await backend.sequenceLogProbs(b), o);
    o += b.B;
  }
  backend.dispose();
  return { logProbs: out };
}
