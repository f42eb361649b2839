// Faults as wrappers: each `--fault` is carried out by wrapping one of the worker's seams, so the
// client and the task handlers have no fault branches. The seams:
//
//   compute   the replica compute step (task -> gradient): sign-flip, scale, nan, random. Wrapped
//             at task level, not per backend call, so a task split into micro-batches is corrupted
//             once, as a whole (per-slice NaNs would be counted by the recombination and per-slice
//             noise would not keep the honest norm).
//   taskView  what version a task is computed and reported at: stale (its held one).
//   params    the parameter sets arriving: stale (keeps the first one applied).
//   sender    results leaving: slow (delay), garbage (malformed messages first), stale (replay of
//             the previous result first).
//   deltaSender  --mode diloco deltas leaving: sign-flip, scale, nan, random act on the decoded
//             delta (repacked with the round's codec; nan poisons the packed floats, since the
//             int8/sparse packers would drop a NaN value silently).
//   stageGrads  a pipeline stage's gradient sum before it is sent (stage-handler.ts): the gradient
//             faults (sign-flip, scale, nan, random, bias, collude) act on it.
//   stageHopDelayMs  a pipeline stage's hops: slow (each hop's compute takes MS ms longer, counted
//             in the compute time it reports: a slow device; the coordinator balances by it).
//   compute, composed: sleeper (honest for N results, then its inner fault's compute wrapper);
//   sybil is its inner fault plus rejoinAfterBan (the client forgets its id on a ban).
//
// What each fault does to the numbers is in faults.ts (pure functions of the gradient and an Rng).

import { l2Norm } from '../../shared/optim/clip.ts';
import { Rng } from '../../shared/rng.ts';
import type { ParamsMsg, TaskMsg } from '../../shared/protocol/messages.ts';
import { sleep } from './clock.ts';
import type { ComputeStep } from './compute-step.ts';
import { corruptGradient, garbageMessages, GARBAGE_KINDS, type FaultSpec } from './faults.ts';
import type { Outgoing, Sender } from './sender.ts';
import { decode, encode, type PackedVector } from '../../shared/diloco/codec.ts';
import type { DeltaSender } from './round-handler.ts';
import type { FaultCounter, LogLevel } from './stats.ts';

/** Applies a parameter set on the client's chain; resolves true once it is on the backend. */
export type ParamsSink = (p: ParamsMsg) => Promise<boolean>;

export interface FaultWrappers {
  compute(step: ComputeStep): ComputeStep;
  taskView(task: TaskMsg): TaskMsg;
  params(sink: ParamsSink): ParamsSink;
  sender(send: Sender): Sender;
  /** The round role's delta sender (--mode diloco). */
  deltaSender(send: DeltaSender): DeltaSender;
  /** A pipeline stage's gradient sum at `version`, as this worker sends it. */
  stageGrads(grads: Float32Array, version: number): Float32Array;
  /** Extra ms each pipeline stage hop computes (slow: a slow device; honest: 0). */
  readonly stageHopDelayMs: number;
  /** A faulty worker expects refusals: it logs them at debug level, an honest one warns. */
  readonly rejectionLevel: LogLevel;
  /** Sybil: after a ban, come back under a fresh identity instead of leaving. */
  readonly rejoinAfterBan?: boolean;
}

/** What the wrappers may see and touch of the worker. */
export interface FaultEnv {
  log(level: LogLevel, msg: string): void;
  count(c: FaultCounter): void;
  /** Version of the parameters the engine holds. */
  heldVersion(): number;
  /** The identity the worker holds now (a sleeper counts its honest results per identity). */
  identity?(): string | undefined;
}

const HONEST: FaultWrappers = {
  compute: (step) => step,
  taskView: (task) => task,
  params: (sink) => sink,
  sender: (send) => send,
  deltaSender: (send) => send,
  stageGrads: (g) => g,
  stageHopDelayMs: 0,
  rejectionLevel: 'warn',
};

/** A packed delta with `spec` applied to its values (repacked with the same codec and parameters). */
export function corruptDelta(spec: FaultSpec, p: PackedVector, rng: Rng, version: number): PackedVector {
  const d = decode(p);
  let ss = 0;
  for (let i = 0; i < d.length; i++) ss += d[i] * d[i];
  const r = corruptGradient(spec, { grads: d, gradNorm: Math.sqrt(ss), nonFinite: 0 }, rng, version);
  const params = { block: p.block ?? 256, chunk: p.chunk ?? 4096, topk: p.k ?? 64 };
  const out = encode(spec.kind === 'nan' ? d.map((x) => (Number.isFinite(x) ? x : 0)) : r.grads, p.codec, params);
  if (spec.kind === 'nan') {
    // The packers keep no NaN value (int8 rounds it to 0): poison the packed floats instead.
    if (out.f32) out.f32[rng.int(out.f32.length)] = NaN;
    if (out.f16) out.f16[rng.int(out.f16.length)] = 0x7e00;
    if (out.scales) out.scales[rng.int(out.scales.length)] = NaN;
    if (out.levels) out.levels[rng.int(out.levels.length)] = NaN;
  }
  return out;
}

/** The wrappers for one fault; `seed` seeds the fault's randomness (NaN positions, noise, garbage). */
export function faultWrappers(spec: FaultSpec, seed: number, env: FaultEnv): FaultWrappers {
  const rng = new Rng(seed);
  const faulty: FaultWrappers = { ...HONEST, rejectionLevel: 'debug' };
  switch (spec.kind) {
    case 'none':
      return HONEST;
    case 'sign-flip':
    case 'scale':
    case 'nan':
    case 'random':
    case 'bias':
    case 'collude':
      return {
        ...faulty,
        compute: (step) => async (backend, task, mb, fixedShape) => {
          const r = await step(backend, task, mb, fixedShape);
          return { ...r, ...corruptGradient(spec, { grads: r.grads, gradNorm: r.gradNorm, nonFinite: r.nonFinite }, rng, task.version) };
        },
        stageGrads: (g, version) => corruptGradient(spec, { grads: g, gradNorm: l2Norm(g), nonFinite: 0 }, rng, version).grads,
        // Deltas: the kinds that are a lie about the numbers (bias and collude stay gradient-only).
        ...(spec.kind === 'bias' || spec.kind === 'collude' ? {} : {
          deltaSender: (send: DeltaSender): DeltaSender => async (msg, ch) => {
            return send({ ...msg, payload: { ...msg.payload, delta: corruptDelta(spec, msg.payload.delta, rng, msg.payload.version) } }, ch);
          },
        }),
      };
    case 'sleeper': {
      const inner = faultWrappers(spec.then, seed, env);
      return {
        ...faulty,
        compute: (step) => {
          const lying = inner.compute(step);
          let done = 0;
          let holder: string | undefined;
          return async (backend, task, mb, fixedShape) => {
            // A Sybil's fresh identity starts its honest stretch again (it must pass probation anew).
            const id = env.identity?.();
            if (id !== holder) {
              holder = id;
              done = 0;
            }
            if (done++ < spec.after) return step(backend, task, mb, fixedShape);
            if (done === spec.after + 1) env.log('debug', `fault sleeper: ${spec.after} honest results done, turning now`);
            return lying(backend, task, mb, fixedShape);
          };
        },
        stageGrads: (() => {
          let done = 0;
          return (g: Float32Array, version: number) => (done++ < spec.after ? g : inner.stageGrads(g, version));
        })(),
      };
    }
    case 'sybil':
      return { ...faultWrappers(spec.then, seed, env), rejoinAfterBan: true };
    case 'slow':
      return {
        ...faulty,
        stageHopDelayMs: spec.ms,
        sender: (send) => async (msg, ch) => {
          await sleep(spec.ms);
          if (!ch.live()) return false; // left meanwhile: the lease is already returned
          return send(msg, ch);
        },
      };
    case 'garbage': {
      let cursor = 0;
      return {
        ...faulty,
        sender: (send) => async (msg, ch) => {
          const junk = garbageMessages(msg.payload as unknown as Record<string, unknown>, msg.event, 3, rng, cursor);
          cursor = (cursor + junk.length) % GARBAGE_KINDS;
          for (const g of junk) {
            if (!ch.emit(g.event, g.payload)) break;
            env.count('garbageSent');
            env.log('debug', `fault garbage: sent ${g.label}`);
          }
          return send(msg, ch);
        },
      };
    }
    case 'stale': {
      let frozen = false;
      let last: Outgoing | undefined;
      return {
        ...faulty,
        // Computes every task on the parameters it holds, and says so (an honest worker refuses
        // a task for another version).
        taskView: (task) => ({ ...task, version: env.heldVersion() }),
        params: (sink) => (p) => {
          if (frozen) {
            env.log('debug', `fault stale: ignoring params version ${p.version}, keeping ${env.heldVersion()}`);
            return Promise.resolve(false);
          }
          return sink(p).then((applied) => {
            if (applied) frozen = true;
            return applied;
          });
        },
        sender: (send) => async (msg, ch) => {
          if (last && ch.emit(last.event, last.payload)) env.count('replays');
          if (!(await send(msg, ch))) return false;
          last = snapshot(msg);
          return true;
        },
      };
    }
  }
}

/** A copy of a sent message whose tensors the caller may reuse. */
function snapshot(msg: Outgoing): Outgoing {
  const payload: Record<string, unknown> = { ...msg.payload };
  for (const [k, v] of Object.entries(payload)) if (ArrayBuffer.isView(v)) payload[k] = (v as Float32Array).slice();
  return { event: msg.event, payload: payload as unknown as Outgoing['payload'] };
}
