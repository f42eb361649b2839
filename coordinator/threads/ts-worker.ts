// startTsWorker(url): a node:worker_threads Worker running a TypeScript module. The thread starts
// from ts-worker-boot.mjs, which registers tsx and imports `entry`; `data` reaches the module as
// workerData. execArgv is empty so the parent's own loader flags (tsx's, vitest's) are not
// registered a second time in the thread.

import { Worker, type ResourceLimits } from 'node:worker_threads';

export function startTsWorker(entry: URL, data: Record<string, unknown> = {}, resourceLimits?: ResourceLimits): Worker {
  return new Worker(new URL('./ts-worker-boot.mjs', import.meta.url), {
    execArgv: [],
    workerData: { ...data, __tsEntry: entry.href },
    ...(resourceLimits ? { resourceLimits } : {}),
  });
}
