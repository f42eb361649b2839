// The round role (--mode diloco, docs/diloco.md): the whole model on this worker; each `round` task
// is H micro-batches on which it runs H inner AdamW steps (on the GPU's AdamW kernel when the
// engine has one: gpu-inner.ts), then sends delta = theta_start - theta_end packed with the round's
// codec. The sparse codec's error feedback (what top-k did not send) stays here and is added to
// the next round's delta. A round the coordinator re-computes (task.fresh) packs its delta alone
// and keeps the residual (compressApart): with top-1.5% deltas the residual holds most of what the
// worker learned, and dropping it on every sampled round cost sparse runs much of their progress. AdamW moments stay on the worker between rounds while its weights are
// the continuation of its last round (an `update` from the version it trained at); weights that
// arrive as full `params` (a new or returning worker) or a rebuilt engine start fresh moments.
// `update` messages (the next published weights as a packed delta) are applied by UpdateHandler.

import type { TrainingBackend } from '../../shared/backend.ts';
import { decode, ErrorFeedback, encode } from '../../shared/diloco/codec.ts';
import { runRound, type InnerEngine } from '../../shared/diloco/inner.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import type { WelcomeMsg, WirePlan } from '../../shared/protocol/messages.ts';
import { validateRoundTask, validateUpdate, type DeltaMsg, type RoundTaskMsg, type UpdateMsg } from '../../shared/protocol/round.ts';
import { now } from './clock.ts';
import type { WarmUpShape } from './engine-session.ts';
import { innerEngineFor } from './gpu-inner.ts';
import type { Channel } from './sender.ts';
import type { TaskContext, TaskHandler } from './task-handler.ts';

/** What the round and update handlers share on one worker. */
export class RoundState {
  engine?: InnerEngine;
  engineFor?: TrainingBackend;
  ef?: ErrorFeedback;
  /** The weights version whose moments continue (the last round's start, advanced by updates); -1: none. */
  chain = -1;
  /** Rounds run with fresh moments / with kept moments (tests and logs). */
  fresh = 0;
  kept = 0;
}

/** Sends a delta (the replica role's Sender and its fault wrappers carry `result`s only). */
export type DeltaSender = (msg: { event: 'delta'; payload: DeltaMsg }, ch: Channel) => Promise<boolean>;
export const honestDeltaSender: DeltaSender = async (msg, ch) => ch.emit(msg.event, msg.payload);

export interface RoundHandlerParts {
  send: DeltaSender;
  state: RoundState;
}

export class RoundHandler implements TaskHandler<RoundTaskMsg> {
  readonly role = 'round' as const;
  readonly event = 'round' as const;

  constructor(private readonly parts: RoundHandlerParts) {}

  validate(raw: unknown, welcome: WelcomeMsg) {
    return validateRoundTask(raw, welcome.model);
  }

  warmUpShape(plan: WirePlan): WarmUpShape | undefined {
    return plan.microBatch > 0 ? { B: plan.microBatch, T: plan.seqLen } : undefined;
  }

  async run(task: RoundTaskMsg, ctx: TaskContext): Promise<void> {
    const { session, welcome: w, stats } = ctx;
    const st = this.parts.state;
    const backend = session.backend;
    if (!backend) throw new Error(`round ${task.taskId}: no engine (device lost?), skipped`);
    if (now() - ctx.receivedAt > task.leaseMs) return ctx.log('warn', `round ${task.taskId}: lease expired before it could start, skipped`);
    const start = session.heldParams;
    if (!start || task.version !== session.paramsVersion) {
      throw new Error(`round ${task.taskId}: needs weights version ${task.version}, this worker holds ${session.paramsVersion}; skipped`);
    }
    if (st.engineFor !== backend || !st.engine) {
      st.engine = innerEngineFor(backend, buildParameterTable(w.model));
      st.engineFor = backend;
      st.chain = -1;
    }
    st.ef ??= new ErrorFeedback(w.paramCount);
    const fresh = st.chain !== task.version || task.fresh === true;
    if (fresh) {
      st.engine.resetMoments();
      st.fresh++;
    } else st.kept++;
    // Weights that do not continue this worker's rounds: its residual belongs to another line.
    if (st.chain !== task.version) st.ef.reset();
    stats.update({ state: 'computing', step: task.step, detail: `round ${task.round}: ${task.H} inner steps (${fresh ? 'fresh' : 'kept'} moments)` });
    const padTo = session.fixedShape && w.plan.microBatch > task.B ? w.plan.microBatch : task.B;
    const t0 = now();
    const r = await runRound(st.engine, start, task, { ...task.hyper, lrs: task.lrs }, {
      padTo,
      between: (j) => {
        stats.update({ detail: `round ${task.round}: inner step ${j + 1}/${task.H}` });
        return new Promise((res) => setTimeout(res, 0)); // heartbeats and socket I/O between steps
      },
    });
    const wall = now() - t0;
    st.chain = task.version;
    if (r.nonFinite > 0) throw new Error(`round ${task.taskId}: ${r.nonFinite} NaN/Inf gradient values in the inner steps; not sent`);
    if (!ctx.channel.live()) return; // left meanwhile: the round's data is already back in the pool
    const packed = task.compress !== 'sparse' ? encode(r.delta, task.compress, task.codec)
      : task.fresh ? st.ef.compressApart(r.delta, 'sparse', task.codec) : st.ef.compress(r.delta, 'sparse', task.codec);
    const msg: DeltaMsg = { taskId: task.taskId, round: task.round, version: task.version, tokens: r.tokens, loss: r.loss, delta: packed, timings: { totalMs: wall } };
    if (!(await this.parts.send({ event: 'delta', payload: msg }, ctx.channel))) return;
    const tokensPerSec = stats.taskSent(r.tokens, wall, wall);
    stats.update({ state: 'idle', lastLoss: r.loss, tokensPerSec, detail: `round ${task.round} sent (loss ${r.loss.toFixed(4)}, ${task.H} steps, ${r.tokens} tokens, ${wall.toFixed(0)} ms)` });
    ctx.log('debug', `round ${task.round} ${task.taskId}: H ${task.H} loss ${r.losses[0].toFixed(4)} -> ${r.losses.at(-1)!.toFixed(4)} ${wall.toFixed(0)} ms`);
  }
}

/** Applies `update` messages: held weights + decode(update) -> the next published version (exact). */
export class UpdateHandler implements TaskHandler<UpdateMsg> {
  readonly role = 'round' as const;
  readonly event = 'update' as const;

  constructor(private readonly state: RoundState) {}

  validate(raw: unknown, welcome: WelcomeMsg) {
    return validateUpdate(raw, welcome.paramCount);
  }

  warmUpShape(): WarmUpShape | undefined {
    return undefined;
  }

  async run(u: UpdateMsg, ctx: TaskContext): Promise<void> {
    const { session } = ctx;
    const held = session.heldParams;
    if (!held || session.paramsVersion !== u.fromVersion || !session.backend) {
      return ctx.log('warn', `update to version ${u.version} is from version ${u.fromVersion}, this worker holds ${session.paramsVersion}: ignored (the next round refuses its start version and the coordinator re-sends full weights)`);
    }
    const d = decode(u.update);
    const next = new Float32Array(held.length);
    for (let i = 0; i < next.length; i++) next[i] = held[i] + d[i];
    await session.setParams(next, u.version);
    if (this.state.chain === u.fromVersion) this.state.chain = u.version;
    ctx.stats.update({ version: u.version, step: u.step });
  }
}
