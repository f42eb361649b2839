// The attackers that try not to be caught (issue 17): bias, collude, sleeper, sybil. Parsed from
// --fault (bad forms are named errors), carried out as wrappers around the real compute step on
// the CPU reference backend.
import { describe, it, expect } from 'vitest';
import { faultWrappers, type FaultEnv } from '../../worker-web/client/fault-wrappers.ts';
import { computeTask } from '../../worker-web/client/compute-step.ts';
import { formatFault, parseFault } from '../../worker-web/client/faults.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { initParameters } from '../../shared/model/init.ts';
import { presetConfig } from '../../shared/model/config.ts';
import { l2Norm } from '../../shared/optim/clip.ts';
import { Rng } from '../../shared/rng.ts';
import type { TaskMsg } from '../../shared/protocol/messages.ts';

function makeTask(seed: number, version: number, V: number): TaskMsg {
  const rng = new Rng(seed);
  const B = 2;
  const T = 8;
  return {
    taskId: `t${seed}`, step: 0, version, B, T,
    inputs: new Int32Array(B * T).map(() => rng.int(V)), targets: new Int32Array(B * T).map(() => rng.int(V)),
    mask: new Uint8Array(B * T).fill(1), tokens: B * T, sampleIds: new Uint32Array(B), leaseMs: 1e6,
  };
}
const env = (): FaultEnv => ({ log: () => {}, count: () => {}, heldVersion: () => 0 });

describe('adaptive attacker faults', () => {
  it('parse and print back; bad forms are ERR_WORKER_FAULT naming the problem', () => {
    for (const s of ['bias:0.001', 'collude:g1', 'collude:g1:2.5', 'sleeper:10:sign-flip', 'sleeper:0:collude:x', 'sybil:sleeper:2:sign-flip', 'sybil:random']) {
      expect(formatFault(parseFault(s))).toBe(s);
    }
    const bad: Array<[string, RegExp]> = [
      ['bias:0', /bias must be/], ['bias:2', /bias must be/], ['collude:', /group name/], ['collude:g:-1', /collude norm/],
      ['sleeper:x:sign-flip', /sleeper needs N:KIND/], ['sleeper:3:stale', /gradient fault/], ['sybil:none', /sybil needs/], ['sybil:sybil:nan', /sybil needs/],
    ];
    for (const [s, why] of bad) expect(() => parseFault(s), s).toThrow(why);
    expect(() => parseFault('sleeper:3:stale')).toThrow(expect.objectContaining({ code: 'ERR_WORKER_FAULT' }));
  });

  it('bias adds eps to every entry and reports the biased norm; collude members send identical updates per version', async () => {
    const config = presetConfig('tiny');
    const backend = createCpuBackend(config);
    await backend.setParams(initParameters(config, 5));
    const task = makeTask(1, 3, config.vocabSize);
    const honest = await computeTask(backend, task, 2);
    const biased = await faultWrappers(parseFault('bias:0.001'), 1, env()).compute(computeTask)(backend, task, 2);
    for (let i = 0; i < honest.grads.length; i += 101) expect(biased.grads[i]).toBeCloseTo(honest.grads[i] + 0.001, 6);
    expect(biased.gradNorm).toBeCloseTo(l2Norm(biased.grads), 5);
    // Two colluders on different data, different seeds: the same vector; the next version another one.
    const a = await faultWrappers(parseFault('collude:g'), 1, env()).compute(computeTask)(backend, task, 2);
    const b = await faultWrappers(parseFault('collude:g'), 9, env()).compute(computeTask)(backend, makeTask(2, 3, config.vocabSize), 2);
    expect(Buffer.from(a.grads.buffer).equals(Buffer.from(b.grads.buffer))).toBe(true);
    expect(a.gradNorm).toBeCloseTo(1, 5);
    expect(a.loss).toBe(honest.loss); // the loss is reported honestly
    const next = await faultWrappers(parseFault('collude:g'), 1, env()).compute(computeTask)(backend, makeTask(1, 4, config.vocabSize), 2);
    expect(Buffer.from(next.grads.buffer).equals(Buffer.from(a.grads.buffer))).toBe(false);
    backend.dispose();
  });

  it('sleeper: honest for N results, then its fault; sybil carries its fault and rejoins after a ban', async () => {
    const config = presetConfig('tiny');
    const backend = createCpuBackend(config);
    await backend.setParams(initParameters(config, 5));
    const task = makeTask(1, 0, config.vocabSize);
    const honest = await computeTask(backend, task, 2);
    const sleeper = faultWrappers(parseFault('sleeper:2:sign-flip'), 1, env()).compute(computeTask);
    const got = [];
    for (let k = 0; k < 4; k++) got.push((await sleeper(backend, task, 2)).grads[7]);
    expect(got).toEqual([honest.grads[7], honest.grads[7], -honest.grads[7], -honest.grads[7]]);
    const sybil = faultWrappers(parseFault('sybil:sleeper:1:sign-flip'), 1, env());
    expect(sybil.rejoinAfterBan).toBe(true);
    expect(faultWrappers(parseFault('sign-flip'), 1, env()).rejoinAfterBan).toBeFalsy();
    const s = sybil.compute(computeTask);
    expect((await s(backend, task, 2)).grads[7]).toBe(honest.grads[7]);
    expect((await s(backend, task, 2)).grads[7]).toBe(-honest.grads[7]);
    backend.dispose();
  });
});

describe('sleeper per identity', () => {
  it('a Sybil sleeper is honest again for N results under each fresh identity', async () => {
    const config = presetConfig('tiny');
    const backend = createCpuBackend(config);
    await backend.setParams(initParameters(config, 5));
    const task = makeTask(1, 0, config.vocabSize);
    const honest = await computeTask(backend, task, 2);
    let id = 'w1';
    const s = faultWrappers(parseFault('sybil:sleeper:1:sign-flip'), 1, { ...env(), identity: () => id }).compute(computeTask);
    const sign = async () => Math.sign((await s(backend, task, 2)).grads[7] / honest.grads[7]);
    expect([await sign(), await sign()]).toEqual([1, -1]);
    id = 'w2'; // banned, rejoined under a fresh id
    expect([await sign(), await sign()]).toEqual([1, -1]);
    backend.dispose();
  });
});
