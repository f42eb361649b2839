// --fault kinds on diloco deltas (worker-web/client/fault-wrappers.ts deltaSender): scale,
// sign-flip, random change the decoded delta as they change a gradient; nan leaves a packed
// delta the coordinator's validator refuses as NON_FINITE (for every codec). End to end: a real
// CPU worker with --fault scale:1.1 in a diloco run with every round re-computed (--verify-rate 1):
// its delta lowers the loss (the Gauntlet-style score lets it through) but the CPU re-computation
// refuses it and the worker is banned; the honest worker's rounds are accepted.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCoordinator } from '../../coordinator/coordinator.ts';
import { syntheticDataset } from '../../shared/data/synthetic.ts';
import { DELTA_CODECS, decode, encode } from '../../shared/diloco/codec.ts';
import { validateDelta, type DeltaMsg } from '../../shared/protocol/round.ts';
import { Rng } from '../../shared/rng.ts';
import { createCpuHost } from '../../worker-web/client/cpu-host.ts';
import { corruptDelta, faultWrappers } from '../../worker-web/client/fault-wrappers.ts';
import { parseFault } from '../../worker-web/client/faults.ts';
import type { DeltaSender } from '../../worker-web/client/round-handler.ts';
import { WorkerClient } from '../../worker-web/client/worker-client.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const n = 5000;
const delta = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 1e-3);

describe('faults on diloco deltas', () => {
  it('scale, sign-flip and random change the values; nan is refused by the validator for every codec', async () => {
    const env = { log: () => undefined, count: () => undefined, heldVersion: () => 0 };
    const sent: DeltaMsg[] = [];
    const capture: DeltaSender = async (m) => (sent.push(m.payload), true);
    const msg = (codec: (typeof DELTA_CODECS)[number]): DeltaMsg => ({ taskId: 't', round: 0, version: 0, tokens: 1, loss: 1, delta: encode(delta, codec), timings: { totalMs: 1 } });
    const honest = decode(msg('none').delta);
    await faultWrappers(parseFault('scale:3'), 1, env).deltaSender(capture)({ event: 'delta', payload: msg('none') }, {} as never);
    expect(Array.from(decode(sent[0].delta))).toEqual(Array.from(honest, (x) => Math.fround(x * 3)));
    await faultWrappers(parseFault('sign-flip'), 1, env).deltaSender(capture)({ event: 'delta', payload: msg('int8') }, {} as never);
    const flipped = decode(sent[1].delta), int8 = decode(encode(delta, 'int8'));
    for (let i = 0; i < n; i++) expect(flipped[i]).toBeCloseTo(-int8[i], 6);
    await faultWrappers(parseFault('random'), 1, env).deltaSender(capture)({ event: 'delta', payload: msg('none') }, {} as never);
    let dot = 0, a = 0, b = 0;
    const rnd = decode(sent[2].delta);
    for (let i = 0; i < n; i++) (dot += rnd[i] * honest[i], a += rnd[i] ** 2, b += honest[i] ** 2);
    expect(Math.abs(dot / Math.sqrt(a * b))).toBeLessThan(0.1);
    expect(Math.sqrt(a) / Math.sqrt(b)).toBeCloseTo(1, 3);
    for (const codec of DELTA_CODECS) {
      const bad = corruptDelta(parseFault('nan'), encode(delta, codec), new Rng(2), 0);
      const v = validateDelta({ taskId: 't', round: 0, version: 0, tokens: 1, loss: 1, delta: bad }, { paramCount: n });
      expect(!v.ok && v.code, codec).toBe('NON_FINITE');
    }
    // An honest worker's sender is the plain one.
    const plain: DeltaSender = async () => true;
    expect(faultWrappers(parseFault('none'), 1, env).deltaSender(plain)).toBe(plain);
  });

  it('end to end: a 1.1x scaling worker passes the loss score, is caught by re-computation and banned', async () => {
    const c = await startCoordinator({
      port: 0, host: '127.0.0.1', preset: 'tiny', runDir: mkdtempSync(join(tmpdir(), 'delta-fault-')), evalEvery: 0, checkpointEvery: 0, logLevel: 'silent', resume: false,
      adminToken: 'delta-fault-token', mode: 'diloco', innerSteps: 3, maxMicroBatch: 2, lr: 3e-3, warmupSteps: 0, roundGraceMs: 200, minWorkers: 2, quorum: 1,
      maxSteps: 3, seqLen: 16, heartbeatMs: 200, deadAfterMs: 3000, verifyRate: 1,
    }, { dataset: (t) => syntheticDataset(96, t) });
    cleanups.push(() => c.close());
    const logs: string[] = [];
    const ids: string[] = [];
    const mk = (name: string, fault?: string) => new WorkerClient({
      url: c.url, name, host: createCpuHost({ description: 'test cpu', probedBytes: 256 * 2 ** 20 }), seed: 7,
      log: (_l, m) => void (fault && logs.push(m)), trace: (e) => void (fault && e.ev === 'welcome' && ids.push(e.workerId)),
      ...(fault ? { fault: parseFault(fault) } : {}),
    });
    const honest = mk('honest');
    const liar = mk('liar', 'scale:1.1');
    cleanups.push(() => honest.stop('test over'), () => liar.stop('test over'));
    await honest.start();
    await liar.start();
    const t0 = Date.now();
    while (!c.trainer.finished) {
      if (Date.now() - t0 > 60_000) throw new Error(`3 rounds not done in 60 s (round ${c.trainer.step})`);
      await new Promise((r) => setTimeout(r, 50));
    }
    while (!logs.some((m) => /BANNED/.test(m)) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 50));
    const refused = logs.filter((m) => /re-computation/.test(m));
    console.log(`delta fault e2e: ${c.trainer.step} rounds; liar ${ids.join(',')} told BANNED ${logs.some((m) => /BANNED/.test(m))}; its refusal: ${refused[0]}`);
    expect(c.trainer.step).toBe(3);
    expect(ids.length).toBeGreaterThan(0);
    expect(logs.some((m) => /BANNED/.test(m))).toBe(true);
    expect(refused.length).toBeGreaterThan(0);
  }, 120_000);
});
