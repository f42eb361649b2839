// Issue 12: "`npm run simulate` and the live plan agree on the same inputs". The CLI runs as a
// separate process (its --json output is all we read); the live side is what the coordinator calls:
// planWorker() per worker (replica or not) and formPipelines() over the rest.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planWorker } from '../../shared/memory/plan.ts';
import { formPipelines } from '../../shared/memory/pipeline-plan.ts';
import { PRESETS, parameterCount } from '../../shared/model/config.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

function simulateJson(args: string[]): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(root, 'coordinator/cli/simulate.ts'), ...args, '--json'], { cwd: root });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1)!)) : reject(new Error(`simulate exited ${code}: ${err}`)));
  });
}

describe('npm run simulate and the live plan', () => {
  it('make the same replicas, pipelines (workers, blocks, ends, micro-batch) and left-outs for the same devices', async () => {
    const c = PRESETS.small;
    const MiB = 2 ** 20;
    // Uneven memory and speed: one replica, 9 MiB workers (the "too small to hold the model"), faster 12 MiB ones, one too small.
    const devices = [
      { mem: 64 * MiB, gflops: 1000 }, ...Array.from({ length: 5 }, () => ({ mem: 9 * MiB, gflops: 1000 })),
      { mem: 12 * MiB, gflops: 3000 }, { mem: 12 * MiB, gflops: 3000 }, { mem: 1 * MiB, gflops: 1000 },
    ];
    const spec = devices.map((d) => `${d.mem}B@${d.gflops}`).join(',');
    const j = await simulateJson(['--model', 'small', '--seq', '16', '--max-micro-batch', '64', '--cluster', spec]);

    // The live side.
    const P = parameterCount(c);
    const plans = devices.map((d) => planWorker(c, { userCapBytes: d.mem }, { seqLen: 16, maxMicroBatch: 64 }));
    // A replica trains whole rows (the gateway's rule): a plan that had to shorten the sequence is not one.
    const isReplica = (i: number) => plans[i].role === 'replica' && plans[i].seqLen === 16;
    const replicas = plans.flatMap((_, i) => (isReplica(i) ? [i] : []));
    const live = formPipelines(c, devices.flatMap((d, i) => (isReplica(i) ? [] : [{
      id: String(i), budgetBytes: d.mem, tokensPerSec: (d.gflops * 1e9) / (6 * P),
    }])), { seqLen: 16, maxMicroBatch: 64 });
    expect(replicas).toEqual([0]);
    expect(live.pipelines.length).toBe(2);

    const cluster = j.cluster;
    expect(cluster.assignments.filter((a: any) => a.role === 'replica').map((a: any) => a.device)).toEqual(replicas);
    expect(cluster.assignments[0].microBatch).toBe(plans[0].microBatch);
    const simPipelines = (cluster.units as any[]).filter((u) => u.kind === 'pipeline').map((u) => {
      const stages = (cluster.stages as any[]).filter((s) => s.pipeline === u.index).sort((a, b) => a.stage - b.stage);
      return {
        inFlight: u.inFlight,
        microBatch: cluster.assignments[stages[0].device].microBatch,
        stages: stages.map((s) => ({ workerId: String(s.device), layers: s.layerRange, embeddings: s.embeddings, head: s.head, bytes: s.bytes })),
      };
    });
    expect(simPipelines).toEqual(live.pipelines.map((p) => ({
      inFlight: p.inFlight, microBatch: p.microBatch,
      stages: p.stages.map((s) => ({ workerId: s.workerId, layers: s.layers, embeddings: s.embeddings, head: s.head, bytes: s.paramBytes + s.activationBytes })),
    })));
    const unassigned = new Map((cluster.unassigned as any[]).map((u) => [String(u.device), u.reason]));
    expect(new Map(live.leftOver.map((l) => [l.id, l.reason]))).toEqual(unassigned);
    expect(unassigned.get('8')).toMatch(/too small for a stage/);
    expect(unassigned.size).toBe(2);
  }, 60_000);
});
