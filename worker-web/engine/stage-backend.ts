// The `webgpu` StageBackend: one pipeline stage (blocks [from, to), shared/model/stage.ts) on the
// engine of backend.ts, whose parameter and gradient buffers then hold only the stage's tensors.
// Each call records nothing new after the first of its (B,T) (step.ts recordStage) and is one
// submit: forward reads back the stage's output (or the logits on the head stage); forwardBackward
// re-runs the forward (no activations are kept between calls: re-materialisation), runs the
// backward from the loss (head) or from dOut written into dres, and reads back the gradient, the
// loss/norm/non-finite results and, after the first stage, dres as dIn.
// With `dpo` on the head's input (--objective dpo), forwardBackward is two submits: the forward +
// per-position CE + per-row sums (seq_logprob), read back; the pair weights on the CPU
// (shared/model/dpo.ts stagePairFigures); then the weighted CE over the logits still in place and
// the backward (step.ts PreferenceDispatches.weightedBackward): no second forward.

import type { StageGradientResult, StageInput } from '../../shared/backend.ts';
import { AppError } from '../../shared/errors.ts';
import { validateModelConfig, type ModelConfig } from '../../shared/model/config.ts';
import { stagePairFigures } from '../../shared/model/dpo.ts';
import { checkStageDOut, checkStageInput, checkStageSpec, type StageSpec } from '../../shared/model/stage.ts';
import { Engine, engineDevice } from './backend.ts';
import type { DeviceLossReport, WebGpuBackendOptions, WebGpuStageBackend } from './backend-types.ts';
import { buildEmbeddingIndex } from './embedding-index.ts';
import type { RecordedStep } from './step.ts';

export async function createWebGpuStageBackend(config: ModelConfig, spec: StageSpec, opts: WebGpuBackendOptions = {}): Promise<WebGpuStageBackend> {
  validateModelConfig(config);
  checkStageSpec(config, spec);
  const { device, info, owned } = await engineDevice(opts);
  const e = new StageEngine(config, device, owned, opts, info, spec);
  if (opts.maxMicroBatch) await e.ensurePlan(opts.maxMicroBatch.B, opts.maxMicroBatch.T);
  return new WebGpuStage(e);
}

class StageEngine extends Engine {
  constructor(...args: ConstructorParameters<typeof Engine>) {
    super(...args);
    // A stage compiles while connected (on its `stage` message): keep the worker's thread free.
    this.rt.compileAsync = true;
  }

  private where(what: string): string {
    return `webgpu stage [${this.spec.from}, ${this.spec.to}): ${what}`;
  }

  /** Validates before anything is written (AppError naming the field; nothing changes). */
  private ready(input: StageInput, what: string, dOut?: Float32Array, backward = false): void {
    this.usable(what);
    if (!this.haveParams) throw new AppError('ERR_NO_PARAMS', this.where(`${what} before setParams()`), 500, 'call setParams(stageParams) first');
    checkStageInput(this.table, input);
    if (backward) checkStageDOut(this.table, input, dOut);
  }

  /** Writes the stage's inputs (tokens or activations, targets/mask, dOut); returns the head's token count. */
  private write(step: RecordedStep, input: StageInput, dOut: Float32Array | undefined, backward: boolean): number {
    const q = this.device.queue;
    const sb = step.buffers;
    const N = input.B * input.T;
    if (this.table.embeddings) {
      const inputs = Int32Array.from(input.inputs!);
      q.writeBuffer(sb.inputs, 0, inputs);
      if (backward) {
        const idx = buildEmbeddingIndex(inputs, this.config.vocabSize);
        q.writeBuffer(sb.rowStart, 0, idx.rowStart.buffer, 0, idx.rowStart.byteLength);
        q.writeBuffer(sb.positions, 0, idx.positions.buffer, 0, idx.positions.byteLength);
      }
    } else {
      const a = input.acts!;
      q.writeBuffer(sb.stageIn, 0, a.buffer, a.byteOffset, a.byteLength);
    }
    if (backward && !this.table.head) q.writeBuffer(sb.dres, 0, dOut!.buffer, dOut!.byteOffset, dOut!.byteLength);
    return this.table.head ? this.writeLoss(step, input.targets!, input.mask!, N) : 0;
  }

  /** Compiles (records) the stage for B x T now, so the first hop of that shape does not; `dpo`: the head's DPO lists too. */
  prepareShape(B: number, T: number, dpo = false): Promise<void> {
    return this.serial(async () => {
      this.usable('prepare()');
      const step = await this.ensurePlan(B, T);
      if (dpo && this.table.head) await step.preference();
    });
  }

  stageForward(input: StageInput): Promise<Float32Array> {
    return this.serial(async () => {
      this.ready(input, 'forward()');
      const step = await this.ensurePlan(input.B, input.T);
      this.write(step, input, undefined, false);
      const enc = this.device.createCommandEncoder({ label: 'stage-forward' });
      const pass = enc.beginComputePass({ label: 'stage-forward' });
      for (const d of step.forward) this.rt.encode(pass, d);
      pass.end();
      const N = input.B * input.T;
      const out = this.table.head
        ? { src: step.buffers.logits!, bytes: N * this.config.vocabSize * 4 }
        : { src: step.buffers.stageOut, bytes: N * this.config.nEmbd * 4 };
      const [raw] = await this.submitAndRead(enc, [out], 'stage forward()');
      return new Float32Array(raw);
    });
  }

  stageForwardBackward(input: StageInput, dOut?: Float32Array): Promise<StageGradientResult> {
    return this.serial(async () => {
      this.ready(input, 'forwardBackward()', dOut, true);
      const t0 = performance.now();
      const step = await this.ensurePlan(input.B, input.T);
      let tokens = this.write(step, input, dOut, true);
      let dpoLoss: number | undefined;
      let list = step.forwardBackward;
      if (this.table.head && input.dpo) {
        const lists = await step.preference();
        const fwd = this.device.createCommandEncoder({ label: 'stage-sequence-logprobs' });
        const fp = fwd.beginComputePass({ label: 'stage-sequence-logprobs' });
        for (const d of lists.sequenceLogProbs) this.rt.encode(fp, d);
        fp.end();
        const [raw] = await this.submitAndRead(fwd, [{ src: step.buffers.seqLogProbs, bytes: input.B * 4 }], 'stage sequence log-probs');
        const fig = stagePairFigures(Float64Array.from(new Float32Array(raw)), input.B, input.dpo);
        this.device.queue.writeBuffer(step.buffers.rowWeights, 0, fig.rowWeights.buffer, fig.rowWeights.byteOffset, fig.rowWeights.byteLength);
        dpoLoss = fig.loss;
        tokens = fig.d.length;
        list = lists.weightedBackward;
      }
      const t1 = performance.now();
      const enc = this.device.createCommandEncoder({ label: 'stage-forward-backward' });
      const pass = enc.beginComputePass({ label: 'stage-forward-backward' });
      for (const d of list) this.rt.encode(pass, d);
      pass.end();
      const copies = [{ src: step.buffers.results, bytes: 16 }, { src: this.grads, bytes: this.layout.floats * 4 }];
      if (!this.table.embeddings) copies.push({ src: step.buffers.dres, bytes: input.B * input.T * this.config.nEmbd * 4 });
      const [rawRes, rawGrads, rawDIn] = await this.submitAndRead(enc, copies, 'stage forwardBackward()');
      const t2 = performance.now();
      const res = new Float32Array(rawRes);
      const padded = new Float32Array(rawGrads);
      const grads = new Float32Array(this.table.total);
      this.table.tensors.forEach((t, i) => grads.set(padded.subarray(this.layout.offsets[i], this.layout.offsets[i] + t.size), t.offset));
      const t3 = performance.now();
      return {
        grads, gradNorm: Math.sqrt(res[1]), nonFinite: new Uint32Array(rawRes)[2],
        ...(rawDIn ? { dIn: new Float32Array(rawDIn) } : {}),
        ...(this.table.head ? { loss: dpoLoss ?? res[0], tokens } : {}),
        timings: { totalMs: t3 - t0, uploadMs: t1 - t0, readbackMs: t3 - t2 },
      };
    });
  }
}

/** The StageBackend face of a stage engine (the engine's whole-model methods stay hidden). */
class WebGpuStage implements WebGpuStageBackend {
  readonly name = 'webgpu' as const;
  constructor(private readonly e: StageEngine) {}
  get config(): ModelConfig { return this.e.config; }
  get spec(): StageSpec { return this.e.spec; }
  get device(): GPUDevice { return this.e.device; }
  get adapterInfo() { return this.e.adapterInfo; }
  get dispatchesPerStep(): number { return this.e.dispatchesPerStep; }
  get plan() { return this.e.plan; }
  get lost(): boolean { return this.e.lost; }
  onLost(cb: (r: DeviceLossReport) => void): void { this.e.onLost(cb); }
  onError(cb: (m: string) => void): void { this.e.onError(cb); }
  setParams(stageParams: Float32Array): Promise<void> { return this.e.setParams(stageParams); }
  forward(input: StageInput): Promise<Float32Array> { return this.e.stageForward(input); }
  forwardBackward(input: StageInput, dOut?: Float32Array): Promise<StageGradientResult> { return this.e.stageForwardBackward(input, dOut); }
  prepare(B: number, T: number, opts?: { dpo?: boolean }): Promise<void> { return this.e.prepareShape(B, T, opts?.dpo === true); }
  dispose(): void { this.e.dispose(); }
}
