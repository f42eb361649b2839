// Faults as wrappers (worker-web/client/fault-wrappers.ts) around the real compute step on the CPU
// reference backend and around a sender on an in-memory channel that records what went out.
import { describe, it, expect } from 'vitest';
import { faultWrappers, type FaultEnv } from '../../worker-web/client/fault-wrappers.ts';
import { computeTask } from '../../worker-web/client/compute-step.ts';
import { parseFault } from '../../worker-web/client/faults.ts';
import { honestSender, type Channel, type Outgoing } from '../../worker-web/client/sender.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { l2Norm } from '../../shared/optim/clip.ts';
import { Rng } from '../../shared/rng.ts';
import type { ParamsMsg, ResultMsg, TaskMsg } from '../../shared/protocol/messages.ts';

function makeTask(B: number, T: number, V: number, version = 0): TaskMsg {
  const rng = new Rng(7);
  const inputs = new Int32Array(B * T).map(() => rng.int(V));
  const targets = new Int32Array(B * T).map(() => rng.int(V));
  const mask = new Uint8Array(B * T).fill(1);
  return { taskId: 't1', step: 0, version, B, T, inputs, targets, mask, tokens: B * T, sampleIds: new Uint32Array(B), leaseMs: 1e6 };
}

function env(held = { v: 3 }): FaultEnv & { counts: Record<string, number>; logs: string[] } {
  const counts: Record<string, number> = {};
  const logs: string[] = [];
  return { counts, logs, log: (_l, m) => logs.push(m), count: (c) => (counts[c] = (counts[c] ?? 0) + 1), heldVersion: () => held.v };
}

function channel(): Channel & { sent: Array<{ event: string; payload: unknown }>; open: boolean } {
  const ch = {
    sent: [] as Array<{ event: string; payload: unknown }>,
    open: true,
    live: () => ch.open,
    emit: (event: string, payload: unknown) => {
      if (!ch.open) return false;
      ch.sent.push({ event, payload });
      return true;
    },
  };
  return ch;
}

function result(taskId: string, grads = new Float32Array([1, 2, 3])): Outgoing {
  const payload: ResultMsg = { taskId, step: 0, version: 0, loss: 1, tokens: 3, grads, gradNorm: l2Norm(grads), nonFinite: 0, timings: { totalMs: 1 } };
  return { event: 'result', payload };
}

describe('fault wrappers', () => {
  it('none: every seam is left as it is, refusals are warnings', () => {
    const f = faultWrappers(parseFault('none'), 1, env());
    expect(f.compute(computeTask)).toBe(computeTask);
    expect(f.sender(honestSender)).toBe(honestSender);
    const t = makeTask(1, 2, 10);
    expect(f.taskView(t)).toBe(t);
    expect(f.rejectionLevel).toBe('warn');
  });

  it('gradient faults corrupt the whole task once, even when it is split into micro-batches', async () => {
    const config = presetConfig('tiny');
    const backend = createCpuBackend(config);
    await backend.setParams(initParameters(config, 5));
    const task = makeTask(5, 8, config.vocabSize);
    const honest = await computeTask(backend, task, 5);
    // nan lies about its NaNs: per-slice corruption would be counted by the recombination.
    const nan = await faultWrappers(parseFault('nan'), 2, env()).compute(computeTask)(backend, task, 2);
    const nans = nan.grads.filter((x) => Number.isNaN(x)).length;
    expect(nans).toBeGreaterThan(0);
    expect(nans).toBeLessThanOrEqual(Math.max(1, Math.floor(nan.grads.length / 100)));
    expect(nan.nonFinite).toBe(0);
    // random keeps the honest norm of the whole task.
    const rnd = await faultWrappers(parseFault('random'), 3, env()).compute(computeTask)(backend, task, 2);
    expect(rnd.gradNorm).toBeCloseTo(honest.gradNorm, 4);
    expect(l2Norm(rnd.grads)).toBeCloseTo(honest.gradNorm, 4);
    const cos = rnd.grads.reduce((a, x, i) => a + x * honest.grads[i], 0) / (honest.gradNorm * honest.gradNorm);
    expect(Math.abs(cos)).toBeLessThan(0.2);
    // sign-flip: the exact negation, loss and tokens untouched.
    const flip = await faultWrappers(parseFault('sign-flip'), 4, env()).compute(computeTask)(backend, task, 5);
    expect(flip.loss).toBe(honest.loss);
    expect(flip.tokens).toBe(honest.tokens);
    for (let i = 0; i < honest.grads.length; i += 97) expect(flip.grads[i]).toBe(-honest.grads[i]);
    backend.dispose();
  });

  it('stale: keeps the first parameter set applied, computes at the version it holds, replays its previous result first', async () => {
    const held = { v: -1 };
    const e = env(held);
    const f = faultWrappers(parseFault('stale'), 1, e);
    const applied: number[] = [];
    const sink = f.params(async (p: ParamsMsg) => {
      applied.push(p.version);
      held.v = p.version;
      return true;
    });
    const params = (version: number): ParamsMsg => ({ version, step: version, params: new Float32Array(1) });
    expect(await sink(params(4))).toBe(true);
    expect(await sink(params(5))).toBe(false);
    expect(applied).toEqual([4]);
    expect(f.taskView(makeTask(1, 2, 10, 9)).version).toBe(4);
    expect(f.rejectionLevel).toBe('debug');

    const send = f.sender(honestSender);
    const ch = channel();
    const first = result('a');
    expect(await send(first, ch)).toBe(true);
    (first.payload.grads as Float32Array)[0] = 99; // the caller reuses its buffer: the replay must not change
    expect(await send(result('b'), ch)).toBe(true);
    expect(ch.sent.map((m) => (m.payload as ResultMsg).taskId)).toEqual(['a', 'a', 'b']);
    expect((ch.sent[1].payload as ResultMsg).grads[0]).toBe(1);
    expect(e.counts.replays).toBe(1);
  });

  it('garbage: malformed messages from the catalog before the honest result; none once the connection is gone', async () => {
    const e = env();
    const send = faultWrappers(parseFault('garbage'), 1, e).sender(honestSender);
    const ch = channel();
    expect(await send(result('a'), ch)).toBe(true);
    expect(ch.sent).toHaveLength(4);
    expect(ch.sent[3]).toEqual({ event: 'result', payload: result('a').payload });
    expect(e.counts.garbageSent).toBe(3);
    ch.open = false;
    expect(await send(result('b'), ch)).toBe(false);
    expect(e.counts.garbageSent).toBe(3);
  });

  it('slow: waits before sending, and sends nothing if the connection died meanwhile', async () => {
    const send = faultWrappers(parseFault('slow:60'), 1, env()).sender(honestSender);
    const ch = channel();
    const t0 = Date.now();
    expect(await send(result('a'), ch)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(55);
    const dead = channel();
    const p = send(result('b'), dead);
    dead.open = false;
    expect(await p).toBe(false);
    expect(dead.sent).toHaveLength(0);
  });
});
