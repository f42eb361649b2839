// The tab's Web Worker: owns the WebGPU device (navigator.gpu is available in dedicated
// workers), the engine and the worker loop, so the page's main thread only renders.

/// <reference lib="webworker" />
import type { EngineHost } from '../client/engine-host.ts';
import { createCpuHost } from '../client/cpu-host.ts';
import { createWebGpuHost } from '../client/webgpu-host.ts';
import { createEngineBackend, createEngineStageBackend } from '../client/engine-factory.ts';
import { WorkerClient } from '../client/worker-client.ts';
import type { PageToWorker, WorkerToPage } from './messages.ts';

declare const self: DedicatedWorkerGlobalScope;

const post = (m: WorkerToPage): void => self.postMessage(m);

let host: EngineHost | undefined;
let hostKind: 'webgpu' | 'cpu' | undefined;
let client: WorkerClient | undefined;

function getHost(cpu: boolean): EngineHost {
  const kind = cpu ? 'cpu' : 'webgpu';
  if (host && hostKind === kind) return host;
  hostKind = kind;
  host = cpu
    ? createCpuHost({
        architecture: '',
        description: `CPU reference in ${navigator.userAgent.slice(0, 120)} (${navigator.hardwareConcurrency ?? '?'} threads)`,
        // navigator.deviceMemory (GB, coarse, Chromium only); the user cap is what really counts.
        probedBytes: deviceMemoryBytes(),
      })
    : createWebGpuHost(() => (self.navigator as Navigator & { gpu?: GPU }).gpu, { createBackend: createEngineBackend, createStageBackend: createEngineStageBackend });
  return host;
}

function deviceMemoryBytes(): number | undefined {
  const gb = (navigator as Navigator & { deviceMemory?: number }).deviceMemory;
  return typeof gb === 'number' && gb > 0 ? Math.floor((gb * 1e9) / 2) : undefined;
}

async function handle(m: PageToWorker): Promise<void> {
  switch (m.type) {
    case 'probe': {
      const backend = m.cpu ? 'cpu' : 'webgpu';
      try {
        const device = await getHost(m.cpu).describe();
        post({ type: 'device', ok: true, backend, device });
      } catch (e) {
        post({ type: 'device', ok: false, backend, error: (e as Error).message });
      }
      return;
    }
    case 'start': {
      if (client) await client.stop('restarted');
      const c = new WorkerClient({
        url: m.url,
        urls: m.urls,
        host: getHost(m.cpu),
        userCapBytes: m.capBytes,
        name: m.name,
        joinToken: m.joinToken,
        agent: 'web-worker/0.1',
        seed: (Math.random() * 2 ** 32) >>> 0,
        log: (level, msg) => post({ type: 'log', level, msg }),
        onStats: (stats) => post({ type: 'stats', stats }),
        trace: m.trace ? (event) => post({ type: 'trace', event }) : undefined,
      });
      client = c;
      void c.stoppedPromise().then(() => {
        const refused = (['UNAUTHORIZED', 'PROTOCOL_VERSION', 'BANNED'] as const).find((code) => (c.stats.rejectedByCode[code] ?? 0) > 0);
        post({ type: 'stopped', reason: c.stats.detail, refused });
      });
      try {
        await c.start();
      } catch (e) {
        post({ type: 'log', level: 'error', msg: `cannot start: ${(e as Error).message}` });
        await c.stop(`cannot start: ${(e as Error).message}`);
      }
      return;
    }
    case 'pause':
      client?.pause('tab hidden');
      return;
    case 'resume':
      client?.resume();
      return;
    case 'stop':
      await client?.stop(m.reason);
      client = undefined;
      return;
  }
}

// Handle messages in order: a 'stop' right after 'start' must not overtake it.
let queue: Promise<void> = Promise.resolve();
self.onmessage = (ev: MessageEvent<PageToWorker>) => {
  queue = queue.then(() => handle(ev.data)).catch((e) => post({ type: 'log', level: 'error', msg: String(e) }));
};
