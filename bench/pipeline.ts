// npm run bench:pipeline — tokens/s of a pipeline of stage workers vs replicas on this machine
// (issue 12, docs/pipeline.md "Measured"). The same model, data and global batch; Node worker
// processes (`worker-web/node/main.ts`, --backend cpu unless --backend webgpu) so each computes on
// its own thread like separate machines: (1) three workers at --memory 9MiB, too small for the
// model: one 3-stage pipeline; (2) three unlimited workers: three replicas; (3) one replica.
// Tokens/s is measured after the first `--warmup` steps (worker start-up and the first shares
// excluded): tokens trained / wall time. Bytes are counted at the coordinator's sockets.
//
//   npx tsx bench/pipeline.ts [--preset small] [--steps 8] [--warmup 2] [--global-batch 16] [--activations fp16] [--backend cpu]
// Prints a table and, as the last line, one JSON object.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { startCoordinator } from '../coordinator/coordinator.ts';
import { PRESET_NAMES } from '../shared/model/config.ts';

const { values } = parseArgs({ options: {
  preset: { type: 'string', default: 'small' }, steps: { type: 'string', default: '8' }, warmup: { type: 'string', default: '2' },
  'global-batch': { type: 'string', default: '16' }, activations: { type: 'string', default: 'fp16' }, backend: { type: 'string', default: 'cpu' },
  memory: { type: 'string', default: '9MiB' },
} });
const preset = String(values.preset);
if (!PRESET_NAMES.includes(preset as never)) throw new Error(`bench:pipeline: --preset must be one of ${PRESET_NAMES.join(', ')}`);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const G = Number(values['global-batch']);
if (!(Number.isInteger(steps) && Number.isInteger(warmup) && steps > warmup && warmup >= 1 && Number.isInteger(G) && G >= 1)) {
  throw new Error('bench:pipeline: --steps > --warmup >= 1 and --global-batch >= 1, integers');
}
const activations = String(values.activations) as 'fp32' | 'fp16' | 'int8';
if (!['fp32', 'fp16', 'int8'].includes(activations)) throw new Error('bench:pipeline: --activations fp32 | fp16 | int8');
const backend = String(values.backend);
if (backend !== 'cpu' && backend !== 'webgpu') throw new Error('bench:pipeline: --backend cpu | webgpu');

interface Run { name: string; workers: number; tokensPerSec: number; stepMs: number; bytesPerToken: number; bubble: number | null; pipelines: number; loss: number }

async function run(name: string, caps: Array<string | undefined>): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-pipe-'));
  const c = await startCoordinator({
    port: 0, host: '127.0.0.1', preset, runDir: dir, globalBatch: G, maxSteps: steps, lr: 1e-2, warmupSteps: 2, evalEvery: 0, checkpointEvery: 0,
    logLevel: 'silent', resume: false, verifyRate: 0, activations, minWorkers: 1, seed: 1,
  });
  const procs: ChildProcess[] = caps.map((cap, i) => spawn(process.execPath, ['--import', 'tsx', 'worker-web/node/main.ts', '--url', c.url, '--backend', backend,
    '--name', `${name}-${i}`, '--quiet', ...(cap ? ['--memory', cap] : [])], { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'inherit'] }));
  try {
    let mark: { t: number; tokens: number; bytes: number } | null = null;
    let bubble: number | null = null;
    let pipelines = 0;
    while (c.trainer.step < steps) {
      await new Promise((r) => setTimeout(r, 10));
      const s = c.ctx.status();
      if (!mark && c.trainer.step >= warmup) mark = { t: Date.now(), tokens: c.trainer.tokensTrained, bytes: (s.wire?.bytesIn ?? 0) + (s.wire?.bytesOut ?? 0) };
      const p = s.pipelines ?? [];
      if (p.length) {
        pipelines = p.length;
        bubble = p.reduce((a, x) => a + x.bubble, 0) / p.length;
      }
    }
    const s = c.ctx.status();
    const sec = (Date.now() - mark!.t) / 1000;
    const tokens = c.trainer.tokensTrained - mark!.tokens;
    const bytes = (s.wire?.bytesIn ?? 0) + (s.wire?.bytesOut ?? 0) - mark!.bytes;
    const h = c.trainer.history;
    return {
      name, workers: caps.length, tokensPerSec: tokens / sec, stepMs: (1000 * sec) / (steps - warmup), bytesPerToken: bytes / tokens, bubble, pipelines,
      loss: h.slice(-3).reduce((a, x) => a + x.loss, 0) / Math.min(3, h.length),
    };
  } finally {
    procs.forEach((p) => p.kill('SIGTERM'));
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const mem = String(values.memory);
const runs = [
  await run('pipeline', [mem, mem, mem]),
  await run('3 replicas', [undefined, undefined, undefined]),
  await run('1 replica', [undefined]),
];
const load = loadavg()[0];
console.log(`\n${preset}, global batch ${G}, steps ${warmup}..${steps}, activations ${activations}, backend ${backend}, load average ${load.toFixed(1)}`);
console.log('tokens = masked-in (trained) positions; bytes = both directions at the coordinator\'s sockets\n');
console.log('run          workers  tokens/s  step ms  bytes/token  bubble');
for (const r of runs) {
  console.log(`${r.name.padEnd(12)} ${String(r.workers).padStart(7)}  ${r.tokensPerSec.toFixed(0).padStart(8)}  ${r.stepMs.toFixed(0).padStart(7)}  ${r.bytesPerToken.toFixed(0).padStart(11)}  ${r.bubble === null ? '-' : r.bubble.toFixed(2)}`);
}
const base = runs[2].tokensPerSec;
console.log(`\npipeline / 1 replica: ${(runs[0].tokensPerSec / base).toFixed(2)}x; 3 replicas / 1 replica: ${(runs[1].tokensPerSec / base).toFixed(2)}x; pipeline / 3 replicas: ${(runs[0].tokensPerSec / runs[1].tokensPerSec).toFixed(2)}x`);
console.log(JSON.stringify({ preset, globalBatch: G, steps, warmup, activations, backend, load, runs }));
process.exit(0);
