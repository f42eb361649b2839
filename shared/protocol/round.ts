// Protocol of DiLoCo rounds (--mode diloco, docs/diloco.md, docs/protocol.md "Rounds"): message
// types and their runtime validators. A round worker (plan role 'round') gets
//   params  (messages.ts) full float32 weights: a new or returning worker; it starts with fresh
//           AdamW moments
//   update  the next published weights as a packed delta from the version it holds (exact: the
//           coordinator's published weights are by definition previous + decode(update))
//   round   H micro-batches of its data shard and the inner hyper-parameters
// and answers with
//   delta   its packed pseudo-gradient theta_start - theta_end (error feedback kept on the worker).
// Every field is checked here (shapes, lengths, numbers, codec payloads: codec.ts validatePacked);
// a bad message gets a named rejection code and changes nothing.

import { CODECS, CodecError, DELTA_CODECS, validatePacked, type CodecName, type CodecParams, type PackedVector } from '../diloco/codec.ts';
import type { ModelConfig } from '../model/config.ts';
import { Bad, int, num, obj, run, str, typed, type Checked } from './field-checks.ts';
import { MAX_INNER_STEPS, type DeltaMsg, type InnerHyperWire, type RoundTaskMsg, type UpdateMsg } from './round-messages.ts';

// The message types live in a leaf (messages.ts imports them; this file imports the field checkers).
export * from './round-messages.ts';


function packed(o: Record<string, unknown>, k: string, where: string, n: number, allowed: readonly CodecName[]): PackedVector {
  try {
    return validatePacked(o[k], n, `${where}.${k}`, allowed);
  } catch (e) {
    if (e instanceof CodecError) throw new Bad(/length/.test(e.message) ? 'BAD_LENGTH' : /Inf|NaN|finite/.test(e.message) ? 'NON_FINITE' : 'BAD_SCHEMA', e.message);
    throw e;
  }
}
/** A `delta` from a worker (the coordinator checks it against the round's lease afterwards). */
export function validateDelta(x: unknown, lim: { paramCount: number; codecs?: readonly CodecName[] }): Checked<DeltaMsg> {
  return run(() => {
    const o = obj(x, 'delta');
    const t = obj(o.timings ?? {}, 'delta.timings');
    return {
      taskId: str(o, 'taskId', 'delta', 64),
      round: int(o, 'round', 'delta'),
      version: int(o, 'version', 'delta'),
      tokens: int(o, 'tokens', 'delta', 0, 2 ** 31),
      loss: num(o, 'loss', 'delta', 0, 1e4),
      delta: packed(o, 'delta', 'delta', lim.paramCount, lim.codecs ?? DELTA_CODECS),
      timings: { totalMs: num(t, 'totalMs', 'delta.timings', 0, 1e9) },
    };
  });
}

/** A `round` task (workers check what the coordinator sends). */
export function validateRoundTask(x: unknown, model: ModelConfig): Checked<RoundTaskMsg> {
  return run(() => {
    const o = obj(x, 'round');
    const H = int(o, 'H', 'round', 1, MAX_INNER_STEPS);
    const B = int(o, 'B', 'round', 1, 1 << 16);
    const T = int(o, 'T', 'round', 1, model.contextLength);
    const n = H * B * T;
    const inputs = typed(o, 'inputs', 'round', Int32Array, n);
    const targets = typed(o, 'targets', 'round', Int32Array, n);
    const mask = typed(o, 'mask', 'round', Uint8Array, n);
    for (let i = 0; i < n; i++) {
      if (inputs[i] < 0 || inputs[i] >= model.vocabSize || targets[i] < 0 || targets[i] >= model.vocabSize) {
        throw new Bad('OUT_OF_RANGE', `round: token id at ${i} outside [0, ${model.vocabSize})`);
      }
    }
    if (!Array.isArray(o.lrs) || o.lrs.length !== H) throw new Bad('BAD_LENGTH', `round.lrs: expected ${H} learning rates`);
    const lrs = (o.lrs as unknown[]).map((_, j) => num(o.lrs as unknown as Record<string, unknown>, String(j), 'round.lrs', 0, 10));
    const h = obj(o.hyper, 'round.hyper');
    const hyper: InnerHyperWire = {
      beta1: num(h, 'beta1', 'round.hyper', 0, 0.999999),
      beta2: num(h, 'beta2', 'round.hyper', 0, 0.999999),
      eps: num(h, 'eps', 'round.hyper', 1e-30, 1),
      weightDecay: num(h, 'weightDecay', 'round.hyper', 0, 10),
      gradClip: num(h, 'gradClip', 'round.hyper', 0),
    };
    if (!(DELTA_CODECS as readonly string[]).includes(o.compress as string)) throw new Bad('BAD_SCHEMA', `round.compress: expected one of ${DELTA_CODECS.join(', ')}`);
    const c = obj(o.codec, 'round.codec');
    const chunk = int(c, 'chunk', 'round.codec', 1, 65536);
    const codec: CodecParams = { block: int(c, 'block', 'round.codec', 1, 1 << 20), chunk, topk: int(c, 'topk', 'round.codec', 1, chunk) };
    if (o.fresh !== undefined && typeof o.fresh !== 'boolean') throw new Bad('BAD_SCHEMA', 'round.fresh: expected a boolean');
    return {
      taskId: str(o, 'taskId', 'round', 64),
      round: int(o, 'round', 'round'),
      step: int(o, 'step', 'round'),
      version: int(o, 'version', 'round'),
      H, B, T, inputs, targets, mask,
      tokens: int(o, 'tokens', 'round'),
      sampleIds: typed(o, 'sampleIds', 'round', Uint32Array, H * B),
      lrs, hyper,
      compress: o.compress as CodecName,
      codec,
      leaseMs: int(o, 'leaseMs', 'round', 1),
      ...(o.fresh === true ? { fresh: true } : {}),
    };
  });
}

/** An `update` (published weights as a packed delta). */
export function validateUpdate(x: unknown, paramCount: number): Checked<UpdateMsg> {
  return run(() => {
    const o = obj(x, 'update');
    const version = int(o, 'version', 'update', 1);
    const fromVersion = int(o, 'fromVersion', 'update');
    if (fromVersion >= version) throw new Bad('OUT_OF_RANGE', `update: fromVersion ${fromVersion} must be below version ${version}`);
    return { round: int(o, 'round', 'update'), fromVersion, version, step: int(o, 'step', 'update'), update: packed(o, 'update', 'update', paramCount, CODECS) };
  });
}
