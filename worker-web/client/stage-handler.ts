// The stage role (docs/pipeline.md): this worker runs blocks [from, to) of the model in a pipeline,
// on a StageBackend (CPU reference, or the WebGPU engine's when the host has one). A `stage`
// message starts a share (and carries this stage's parameter slice when the version is new); each
// `hop` is one micro-batch:
//   fwd, not the head: forward(input) -> its output goes back as stageOut 'fwd'; the input is kept
//   fwd, the head:     forwardBackward(input) at once (it has targets and mask) -> stageOut 'bwd'
//                      with dIn, the loss and the tokens (--objective dpo: the hop's pairs, whose
//                      DPO loss the head computes; tokens = pairs)
//   bwd:               forwardBackward(kept input, dOut): the forward is recomputed (no saved
//                      activations: re-materialisation) -> stageOut 'bwd' with dIn (none at the
//                      first stage); the input is dropped
// The stage gradient is accumulated as sum_m tokens_m x g_m; after the share's last micro-batch it
// goes up as stageOut 'grad' with sum_m tokens_m. Activations travel packed in the share's dtype.

import type { StageBackend, StageInput } from '../../shared/backend.ts';
import type { StageSpec } from '../../shared/model/stage.ts';
import { packActivations } from '../../shared/pipeline/activation-codec.ts';
import type { WelcomeMsg, WirePlan } from '../../shared/protocol/messages.ts';
import { validateHop, validateStageTask, type CheckedHop, type StageOutMsg, type StageTaskMsg } from '../../shared/protocol/stage.ts';
import type { Checked } from '../../shared/protocol/validate.ts';
import { now } from './clock.ts';
import type { WarmUpShape } from './engine-session.ts';
import type { TaskContext, TaskHandler } from './task-handler.ts';

/** What the stage and hop handlers share on one worker: the running share. */
export class StageState {
  /** The last share announced (validated in arrival order: hops that follow belong to it). */
  announced?: { taskId: string; spec: StageSpec };
  task?: StageTaskMsg;
  backend?: StageBackend;
  /** `${version}:${from}-${to}` of the parameters on `backend`. */
  heldKey = '';
  /** Stage inputs kept between a micro-batch's forward and its backward. */
  readonly inputs = new Map<number, StageInput>();
  acc?: Float32Array;
  tokens = 0;
  done = 0;
  lossSum = 0;
  computeMs = 0;
  startedAt = 0;
}

export class StageTaskHandler implements TaskHandler<StageTaskMsg> {
  readonly role = 'stage' as const;
  readonly event = 'stage' as const;
  readonly ownEngine = true;

  constructor(private readonly st: StageState) {}

  validate(raw: unknown, welcome: WelcomeMsg): Checked<StageTaskMsg> {
    const v = validateStageTask(raw, welcome.model);
    if (v.ok) this.st.announced = { taskId: v.value.taskId, spec: { from: v.value.layers[0], to: v.value.layers[1] } };
    return v;
  }

  warmUpShape(_plan: WirePlan): WarmUpShape | undefined {
    return undefined;
  }

  async run(task: StageTaskMsg, ctx: TaskContext): Promise<void> {
    const st = this.st;
    const spec = { from: task.layers[0], to: task.layers[1] };
    const backend = await ctx.session.ensureStage(ctx.welcome.model, spec);
    const key = `${task.version}:${spec.from}-${spec.to}`;
    if (task.params) {
      await backend.setParams(task.params);
      st.heldKey = key;
    } else if (st.backend !== backend || st.heldKey !== key) {
      st.task = undefined;
      throw new Error(`share ${task.taskId}: needs the parameters of blocks [${spec.from}, ${spec.to}) at version ${task.version}, this worker holds ${st.heldKey || 'none'}; skipped`);
    }
    // A fixed-shape engine compiles the share's micro-batch shape now, before its first hop (each
    // stage of the pipeline compiles at once, not one after the other as hops arrive); the compile
    // yields to the event loop (kernel.ts warm), so heartbeats go on. The coordinator counts the
    // share's lease from this stage's first answer (stage-assigner.ts).
    if (task.microBatch && task.seqLen && backend.prepare) {
      const t0 = now();
      ctx.stats.update({ state: 'computing', detail: `compiling blocks [${spec.from}, ${spec.to}) for micro-batch ${task.microBatch} x ${task.seqLen}` });
      await backend.prepare(task.microBatch, task.seqLen, { dpo: task.dpo === true });
      const ms = now() - t0;
      if (ms > 1000) ctx.log('info', `stage [${spec.from}, ${spec.to}) compiled for ${task.microBatch} x ${task.seqLen} in ${(ms / 1000).toFixed(1)} s`);
    }
    st.backend = backend;
    st.task = task;
    st.inputs.clear();
    st.acc = undefined;
    st.tokens = 0;
    st.done = 0;
    st.lossSum = 0;
    st.computeMs = 0;
    st.startedAt = now();
    ctx.stats.update({
      state: 'computing', step: task.step, version: task.version,
      detail: `stage ${task.index + 1}/${task.stages} (blocks [${spec.from}, ${spec.to})) of pipeline ${task.pipelineId}: share ${task.taskId}, ${task.micros} micro-batches`,
    });
  }
}

export class HopHandler implements TaskHandler<CheckedHop> {
  readonly role = 'stage' as const;
  readonly event = 'hop' as const;
  readonly ownEngine = true;

  /**
   * `corrupt`: the fault seam on the gradient sum (fault-wrappers.ts stageGrads; honest: identity).
   * `delayMs`: --fault slow:MS, each hop computes that much longer (a slow device; honest: 0).
   */
  constructor(
    private readonly st: StageState,
    private readonly corrupt: (grads: Float32Array, version: number) => Float32Array = (g) => g,
    private readonly delayMs = 0,
  ) {}

  validate(raw: unknown, welcome: WelcomeMsg): Checked<CheckedHop> {
    const a = this.st.announced;
    if (!a) return { ok: false, code: 'UNKNOWN_TASK', message: 'hop before any stage message' };
    return validateHop(raw, welcome.model, a.spec);
  }

  warmUpShape(_plan: WirePlan): WarmUpShape | undefined {
    return undefined;
  }

  async run(hop: CheckedHop, ctx: TaskContext): Promise<void> {
    const st = this.st;
    const task = st.task;
    const backend = st.backend;
    // A hop of a share that was withdrawn (or whose stage message was skipped): nothing to do.
    if (!task || !backend || hop.taskId !== task.taskId) return ctx.log('debug', `hop of share ${hop.taskId} ignored (not the running share)`);
    // A CPU backend computes on this thread: let heartbeats and socket I/O through between hops.
    await new Promise((r) => setTimeout(r, 0));
    if (!ctx.channel.live()) return;
    const C = ctx.welcome.model.nEmbd;
    const rows = hop.B * hop.T;
    const first = task.index === 0;
    const head = task.index === task.stages - 1;
    const t0 = now();
    if (this.delayMs > 0) {
      await new Promise((r) => setTimeout(r, this.delayMs));
      if (!ctx.channel.live()) return;
    }
    let out: StageOutMsg;
    if (hop.kind === 'fwd' && !head) {
      const input: StageInput = { B: hop.B, T: hop.T, ...(first ? { inputs: hop.inputs } : { acts: hop.actsValues }) };
      const y = await backend.forward(input);
      st.inputs.set(hop.micro, input);
      out = { kind: 'fwd', taskId: task.taskId, micro: hop.micro, acts: packActivations(y, rows, C, task.dtype), ms: now() - t0 };
    } else {
      let input: StageInput | undefined;
      if (hop.kind === 'fwd') {
        input = {
          B: hop.B, T: hop.T, ...(first ? { inputs: hop.inputs } : { acts: hop.actsValues }), targets: hop.targets, mask: hop.mask,
          ...(hop.dpo ? { dpo: hop.dpo } : {}),
        };
      } else {
        input = st.inputs.get(hop.micro);
        if (!input) throw new Error(`share ${task.taskId}: backward of micro-batch ${hop.micro} without its kept input; skipped`);
      }
      const r = await backend.forwardBackward(input, head ? undefined : hop.gradValues);
      st.inputs.delete(hop.micro);
      const k = head ? (r.tokens ?? 0) : hop.tokens;
      st.acc ??= new Float32Array(r.grads.length);
      if (k > 0) for (let i = 0; i < r.grads.length; i++) st.acc[i] += k * r.grads[i];
      st.tokens += k;
      if (head) st.lossSum += (r.loss ?? 0) * k;
      st.done++;
      out = {
        kind: 'bwd', taskId: task.taskId, micro: hop.micro, ms: now() - t0,
        ...(first ? {} : { dIn: packActivations(r.dIn!, rows, C, task.dtype) }),
        ...(head ? { loss: r.loss ?? 0, tokens: k } : {}),
      };
    }
    st.computeMs += now() - t0;
    if (!ctx.channel.emit('stageOut', out)) return;
    if (st.done < task.micros) return;
    // The share's last micro-batch: this stage's gradient sum goes up. Non-finite values are sent
    // and counted: the coordinator refuses them at once and re-leases the share.
    const grads = this.corrupt(st.acc ?? new Float32Array(0), task.version);
    let nonFinite = 0;
    for (let i = 0; i < grads.length; i++) if (!Number.isFinite(grads[i])) nonFinite++;
    if (nonFinite > 0) ctx.log('error', `share ${task.taskId}: ${nonFinite} non-finite gradient values`);
    if (!ctx.channel.emit('stageOut', { kind: 'grad', taskId: task.taskId, version: task.version, tokens: st.tokens, grads, nonFinite })) return;
    const wall = now() - st.startedAt;
    const tokensPerSec = ctx.stats.taskSent(st.tokens, st.computeMs, wall);
    ctx.stats.update({
      state: 'idle', tokensPerSec,
      ...(head && st.tokens > 0 ? { lastLoss: st.lossSum / st.tokens } : {}),
      detail: `share ${task.taskId} sent (stage ${task.index + 1}/${task.stages}, ${task.micros} micro-batches, ${st.tokens} tokens, ${wall.toFixed(0)} ms)`,
    });
    st.task = undefined;
    st.acc = undefined;
  }
}
