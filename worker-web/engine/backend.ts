// The `webgpu` TrainingBackend: parameters and gradients resident on the GPU, the whole
// forward+backward recorded once per (B,T) and replayed with one submit per micro-batch; only
// the gradient, loss, norm and non-finite count come back. The contract (WebGpuBackend, options,
// loss report) is in backend-types.ts. The engine runs a pipeline stage (blocks [from, to),
// stage-backend.ts wraps it as a StageBackend); the whole model is the stage [0, L).
// Why this file is long: every entry point (forward, forwardBackward, the preference pair
// sequenceLogProbs / forwardBackwardWeighted, AdamW, profiling) runs on the same private device
// buffers and serial queue of one class; splitting it would expose them.

import type { ForwardResult, GradientResult, MicroBatch } from '../../shared/backend.ts';
import { AppError, isAppError } from '../../shared/errors.ts';
import { validateModelConfig, type ModelConfig } from '../../shared/model/config.ts';
import { buildStageTable, type StageSpec, type StageTable } from '../../shared/model/stage.ts';
import { checkBatch } from '../../shared/model/cpu/gpt.ts';
import { KernelRuntime, type Dispatch } from './kernel.ts';
import { STORAGE } from './buffers.ts';
import { paddedLayout, planEngine, type EnginePlan, type PaddedLayout } from './plan.ts';
import { recordStage, type RecordedStep } from './step.ts';
import { buildEmbeddingIndex } from './embedding-index.ts';
import { requestEngineDevice, type AdapterInfo } from './device.ts';
import { createKernelHarness } from './harness.ts';
import type { KernelHarness } from './harness-types.ts';
import { ADAMW_UNIFORM_FLOATS, adamwSpec, adamwUniform } from './kernels/adamw.ts';
import type { AdamWHyper, DeviceLossReport, WebGpuBackend, WebGpuBackendOptions } from './backend-types.ts';

export type { AdamWHyper, DeviceLossReport, WebGpuBackend, WebGpuBackendOptions } from './backend-types.ts';

export async function createWebGpuBackend(config: ModelConfig, opts: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  validateModelConfig(config);
  const { device, info, owned } = await engineDevice(opts);
  const b = new Engine(config, device, owned, opts, info);
  if (opts.maxMicroBatch) await b.ensurePlan(opts.maxMicroBatch.B, opts.maxMicroBatch.T);
  return b;
}

/** The caller's device, or one requested from opts.gpu / navigator.gpu (then owned by the engine). */
export async function engineDevice(opts: WebGpuBackendOptions): Promise<{ device: GPUDevice; info: AdapterInfo | undefined; owned: boolean }> {
  let device = opts.device;
  let info = opts.adapterInfo;
  const owned = !device;
  if (!device) {
    const gpu = opts.gpu ?? (globalThis.navigator as Navigator | undefined)?.gpu;
    if (!gpu) {
      throw new AppError('ERR_WEBGPU_UNAVAILABLE', 'webgpu engine: no GPU object (navigator.gpu is undefined)', 503,
        'in Node pass { gpu: nodeGpu() } from worker-web/engine/node-gpu.ts');
    }
    const ed = await requestEngineDevice(gpu);
    device = ed.device;
    info = ed.info;
  }
  return { device, info, owned };
}

export class Engine implements WebGpuBackend {
  readonly name = 'webgpu' as const;
  protected readonly rt: KernelRuntime;
  protected readonly table: StageTable;
  protected readonly layout: PaddedLayout;
  protected readonly params: GPUBuffer;
  protected readonly grads: GPUBuffer;
  /** The blocks this engine holds; the whole model unless it is a pipeline stage's. */
  readonly spec: StageSpec;
  private readonly full: boolean;
  private step: RecordedStep | undefined;
  private currentPlan: EnginePlan | undefined;
  protected haveParams = false;
  private disposed = false;
  private lostFlag = false;
  private lostCbs: Array<(r: DeviceLossReport) => void> = [];
  private errCbs: Array<(m: string) => void> = [];
  private moments: { m: GPUBuffer; v: GPUBuffer; t: number } | undefined;
  private haveGrads = false;
  /** Calls run one at a time: a step reuses the plan's buffers, so two must not interleave. */
  private queue: Promise<unknown> = Promise.resolve();
  protected serial<R>(f: () => Promise<R>): Promise<R> {
    const r = this.queue.then(f, f);
    this.queue = r.catch(() => undefined);
    return r;
  }

  constructor(
    readonly config: ModelConfig,
    readonly device: GPUDevice,
    private readonly ownsDevice: boolean,
    private readonly opts: WebGpuBackendOptions,
    readonly adapterInfo: AdapterInfo | undefined,
    spec?: StageSpec,
  ) {
    this.spec = spec ? { from: spec.from, to: spec.to } : { from: 0, to: config.nLayer };
    this.full = this.spec.from === 0 && this.spec.to === config.nLayer;
    const dc = opts.deviceClass;
    this.rt = new KernelRuntime(device, dc ? { software: dc === 'software' } : adapterInfo ? { software: adapterInfo.isSoftware } : {});
    this.table = buildStageTable(config, this.spec); // the full model: exactly the parameter table
    // Checks every parameter tensor against the binding limit before allocating anything.
    planEngine(config, 1, 1, device.limits, undefined, this.planSpec);
    this.layout = paddedLayout(this.table, device.limits.minStorageBufferOffsetAlignment);
    this.params = device.createBuffer({ size: this.layout.floats * 4, usage: STORAGE(), label: 'params' });
    this.grads = device.createBuffer({ size: this.layout.floats * 4, usage: STORAGE(), label: 'grads' });
    void device.lost.then((i) => {
      if (this.disposed) return;
      this.lostFlag = true;
      const r: DeviceLossReport = { reason: String(i.reason ?? 'unknown'), message: i.message || '(no message)', lastKernel: this.rt.lastLabel || '(none)' };
      for (const cb of this.lostCbs) cb(r);
    });
    device.addEventListener('uncapturederror', this.onUncaptured);
  }

  /** Kept as a field so dispose() can detach it from a shared device. */
  private readonly onUncaptured = (ev: Event): void => {
    {
      const msg = `webgpu engine: uncaptured ${(ev as GPUUncapturedErrorEvent).error.constructor?.name ?? 'error'} after kernel "${this.rt.lastLabel}": ${(ev as GPUUncapturedErrorEvent).error.message}`;
      for (const cb of this.errCbs) cb(msg);
      if (this.errCbs.length === 0) console.error(msg);
    }
  };

  get dispatchesPerStep(): number {
    return this.step?.forwardBackward.length ?? 0;
  }
  get plan(): EnginePlan | undefined {
    return this.currentPlan;
  }
  get lost(): boolean {
    return this.lostFlag;
  }
  onLost(cb: (r: DeviceLossReport) => void): void {
    this.lostCbs.push(cb);
  }
  onError(cb: (m: string) => void): void {
    this.errCbs.push(cb);
  }
  harness(): KernelHarness {
    return createKernelHarness(this.device, this.rt);
  }

  /** planEngine's `spec` argument: none for the whole model. */
  protected get planSpec(): StageSpec | undefined {
    return this.full ? undefined : this.spec;
  }

  protected usable(where: string): void {
    if (this.disposed) throw new AppError('ERR_BACKEND_DISPOSED', `webgpu backend: ${where} after dispose()`, 500);
    if (this.lostFlag) {
      throw new AppError('ERR_WEBGPU_DEVICE_LOST', `webgpu backend: ${where} on a lost device`, 503,
        'create a new backend with createWebGpuBackend (the worker does this on onLost)');
    }
  }

  async ensurePlan(B: number, T: number): Promise<RecordedStep> {
    if (this.step && this.step.B === B && this.step.T === T) return this.step;
    const max = this.opts.maxMicroBatch;
    if (max && (B > max.B || T > max.T)) {
      throw new AppError('ERR_BATCH_TOO_LARGE', `webgpu backend: micro-batch B=${B}, T=${T} exceeds maxMicroBatch B=${max.B}, T=${max.T}`,
        400, 'split the micro-batch or raise maxMicroBatch');
    }
    const plan = planEngine(this.config, B, T, this.device.limits, this.rt, this.planSpec);
    const cap = this.opts.memoryCapBytes;
    if (cap !== undefined && plan.totalBytes > cap) {
      throw new AppError('ERR_ENGINE_MEMORY',
        `webgpu backend: plan B=${B}, T=${T} needs ${plan.totalBytes} bytes of GPU buffers, over the memory cap ${cap}`, 400,
        'use a smaller micro-batch or raise the cap');
    }
    this.step?.destroy();
    this.step = undefined;
    this.currentPlan = undefined;
    this.step = await recordStage(this.rt, this.config, this.spec, this.layout, this.params, this.grads, B, T, this.opts.attention ?? 'auto');
    this.currentPlan = plan;
    return this.step;
  }

  async setParams(params: Float32Array): Promise<void> {
    this.usable('setParams()');
    if (!(params instanceof Float32Array) || params.length !== this.table.total) {
      throw new AppError('ERR_PARAM_SIZE', `webgpu backend: setParams got ${params?.length} values, ${this.full ? 'the model' : `stage [${this.spec.from}, ${this.spec.to})`} needs ${this.table.total}`,
        400, this.full ? 'pass a Float32Array laid out as buildParameterTable(config)' : 'pass gatherStage(buildStageTable(config, spec), fullParams)');
    }
    this.table.tensors.forEach((t, i) => {
      this.device.queue.writeBuffer(this.params, this.layout.offsets[i] * 4, params.buffer, params.byteOffset + t.offset * 4, t.size * 4);
    });
    this.haveParams = true;
  }

  private checked(batch: MicroBatch, where: string): void {
    this.usable(where);
    if (!this.full) throw new AppError('ERR_STAGE_ROLE', `webgpu backend: ${where} of the whole model on a stage engine [${this.spec.from}, ${this.spec.to})`, 500, 'use createWebGpuStageBackend');
    if (!this.haveParams) throw new AppError('ERR_NO_PARAMS', `webgpu backend: ${where} before setParams()`, 500, 'call setParams(params) first');
    try {
      checkBatch(this.config, batch);
    } catch (e) {
      if (isAppError(e)) throw new AppError(e.code, e.message.replace('cpu model', 'webgpu backend'), e.status);
      throw e;
    }
  }

  /** Writes the batch; returns the token count. */
  private upload(step: RecordedStep, batch: MicroBatch): number {
    const tokens = this.writeLoss(step, batch.targets, batch.mask, batch.B * batch.T);
    this.device.queue.writeBuffer(step.buffers.inputs, 0, Int32Array.from(batch.inputs));
    return tokens;
  }

  /** Writes targets, mask and 1/tokens for the loss kernels; returns the token count. */
  protected writeLoss(step: RecordedStep, batchTargets: ArrayLike<number>, batchMask: ArrayLike<number>, N: number): number {
    const q = this.device.queue;
    const sb = step.buffers;
    const mask = new Uint32Array(N);
    let tokens = 0;
    for (let i = 0; i < N; i++) {
      mask[i] = batchMask[i] ? 1 : 0;
      tokens += mask[i];
    }
    // Masked-out targets may be anything (padding); the kernel never reads them for the loss.
    const targets = new Int32Array(N);
    for (let i = 0; i < N; i++) targets[i] = mask[i] ? batchTargets[i] : 0;
    q.writeBuffer(sb.targets, 0, targets);
    q.writeBuffer(sb.mask, 0, mask);
    q.writeBuffer(sb.batch, 0, new Float32Array([tokens > 0 ? 1 / tokens : 0, 0, 0, 0]));
    return tokens;
  }

  /**
   * Copy each source into its own staging buffer (so no staging buffer exceeds maxBufferSize),
   * submit once, map all; returns one ArrayBuffer per copy.
   */
  protected async submitAndRead(enc: GPUCommandEncoder, copies: Array<{ src: GPUBuffer; bytes: number }>, where: string): Promise<ArrayBuffer[]> {
    const staging = copies.map((c) => {
      const s = this.device.createBuffer({ size: c.bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'step-readback' });
      enc.copyBufferToBuffer(c.src, 0, s, 0, c.bytes);
      return s;
    });
    this.device.queue.submit([enc.finish()]);
    try {
      await Promise.all(staging.map((s) => s.mapAsync(GPUMapMode.READ)));
    } catch (e) {
      for (const s of staging) s.destroy();
      throw new AppError('ERR_WEBGPU_DEVICE_LOST', `webgpu backend: ${where} failed while reading results after kernel "${this.rt.lastLabel}": ${(e as Error).message}`, 503,
        'the device was probably lost; create a new backend');
    }
    return staging.map((s) => {
      const out = s.getMappedRange().slice(0);
      s.unmap();
      s.destroy();
      return out;
    });
  }

  forward(batch: MicroBatch): Promise<ForwardResult> {
    return this.serial(() => this.forwardNow(batch));
  }

  private async forwardNow(batch: MicroBatch): Promise<ForwardResult> {
    this.checked(batch, 'forward()');
    const step = await this.ensurePlan(batch.B, batch.T);
    const tokens = this.upload(step, batch);
    const enc = this.encodePass('forward', step.forward);
    const N = batch.B * batch.T;
    const V = this.config.vocabSize;
    const [res, logits] = await this.submitAndRead(enc, [{ src: step.buffers.results, bytes: 16 }, { src: step.buffers.logits!, bytes: N * V * 4 }], 'forward()');
    return { logits: new Float32Array(logits), loss: new Float32Array(res)[0], tokens };
  }

  forwardBackward(batch: MicroBatch): Promise<GradientResult> {
    return this.serial(() => this.forwardBackwardNow(batch));
  }

  private async forwardBackwardNow(batch: MicroBatch): Promise<GradientResult> {
    this.checked(batch, 'forwardBackward()');
    const t0 = performance.now();
    const step = await this.ensurePlan(batch.B, batch.T);
    const tokens = this.upload(step, batch);
    this.writeEmbeddingIndex(step, batch);
    const t1 = performance.now();
    const enc = this.encodePass('forward-backward', step.forwardBackward);
    const [rawRes, rawGrads] = await this.submitAndRead(enc, [{ src: step.buffers.results, bytes: 16 }, { src: this.grads, bytes: this.layout.floats * 4 }], 'forwardBackward()');
    const t2 = performance.now();
    const res = new Float32Array(rawRes);
    const nonFinite = new Uint32Array(rawRes)[2];
    const grads = this.unpad(rawGrads);
    this.haveGrads = true;
    const t3 = performance.now();
    return {
      loss: res[0], tokens, grads, gradNorm: Math.sqrt(res[1]), nonFinite,
      timings: { totalMs: t3 - t0, uploadMs: t1 - t0, readbackMs: t3 - t2 },
    };
  }

  sequenceLogProbs(batch: MicroBatch): Promise<Float64Array> {
    return this.serial(() => this.sequenceLogProbsNow(batch));
  }

  private async sequenceLogProbsNow(batch: MicroBatch): Promise<Float64Array> {
    this.checked(batch, 'sequenceLogProbs()');
    const step = await this.ensurePlan(batch.B, batch.T);
    const lists = await step.preference();
    this.upload(step, batch);
    const enc = this.encodePass('sequence-logprobs', lists.sequenceLogProbs);
    const [raw] = await this.submitAndRead(enc, [{ src: step.buffers.seqLogProbs, bytes: batch.B * 4 }], 'sequenceLogProbs()');
    return Float64Array.from(new Float32Array(raw));
  }

  forwardBackwardWeighted(batch: MicroBatch, rowWeights: Float32Array): Promise<GradientResult> {
    return this.serial(() => this.forwardBackwardWeightedNow(batch, rowWeights));
  }

  private async forwardBackwardWeightedNow(batch: MicroBatch, rowWeights: Float32Array): Promise<GradientResult> {
    this.checked(batch, 'forwardBackwardWeighted()');
    if (!(rowWeights instanceof Float32Array) || rowWeights.length !== batch.B || !rowWeights.every(Number.isFinite)) {
      throw new AppError('ERR_BATCH_SHAPE', `webgpu backend: rowWeights must be ${batch.B} finite float32 values (one per row), got ${rowWeights?.length}`, 400);
    }
    const t0 = performance.now();
    const step = await this.ensurePlan(batch.B, batch.T);
    const lists = await step.preference();
    const tokens = this.upload(step, batch);
    this.device.queue.writeBuffer(step.buffers.rowWeights, 0, rowWeights.buffer, rowWeights.byteOffset, rowWeights.byteLength);
    this.writeEmbeddingIndex(step, batch);
    const t1 = performance.now();
    const enc = this.encodePass('forward-backward-weighted', lists.forwardBackwardWeighted);
    const [rawRes, rawSeq, rawGrads] = await this.submitAndRead(enc, [
      { src: step.buffers.results, bytes: 16 }, { src: step.buffers.seqLogProbs, bytes: batch.B * 4 }, { src: this.grads, bytes: this.layout.floats * 4 },
    ], 'forwardBackwardWeighted()');
    const t2 = performance.now();
    const res = new Float32Array(rawRes);
    const seq = new Float32Array(rawSeq);
    let loss = 0; // sum_b w_b * (-log p(sequence b)), as the CPU backend reports it
    for (let b = 0; b < batch.B; b++) loss -= rowWeights[b] * seq[b];
    const grads = this.unpad(rawGrads);
    this.haveGrads = true;
    const t3 = performance.now();
    return {
      loss, tokens, grads, gradNorm: Math.sqrt(res[1]), nonFinite: new Uint32Array(rawRes)[2],
      timings: { totalMs: t3 - t0, uploadMs: t1 - t0, readbackMs: t3 - t2 },
    };
  }

  adamwStep(h: AdamWHyper): Promise<void> {
    return this.serial(() => this.adamwNow(h));
  }

  profileStep(batch: MicroBatch): Promise<Array<{ label: string; ms: number }>> {
    return this.serial(() => this.profileNow(batch));
  }

  private async profileNow(batch: MicroBatch): Promise<Array<{ label: string; ms: number }>> {
    this.checked(batch, 'profileStep()');
    if (!this.device.features.has('timestamp-query')) {
      throw new AppError('ERR_WEBGPU_NO_TIMESTAMPS', 'webgpu backend: profileStep() needs the timestamp-query feature on this device', 400,
        'create the device with requestEngineDevice (it asks for timestamp-query when the adapter has it)');
    }
    const step = await this.ensurePlan(batch.B, batch.T);
    this.upload(step, batch);
    this.writeEmbeddingIndex(step, batch);
    const list = step.forwardBackward;
    const n = list.length;
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 * n, label: 'profile' });
    const resolve = this.device.createBuffer({ size: 16 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, label: 'profile-resolve' });
    const enc = this.device.createCommandEncoder({ label: 'profile' });
    list.forEach((d, i) => {
      const pass = enc.beginComputePass({ label: d.spec.label, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      this.rt.encode(pass, d);
      pass.end();
    });
    enc.resolveQuerySet(querySet, 0, 2 * n, resolve, 0);
    try {
      const [raw] = await this.submitAndRead(enc, [{ src: resolve, bytes: 16 * n }], 'profileStep()');
      const t = new BigUint64Array(raw);
      return list.map((d, i) => ({ label: d.spec.label, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 }));
    } finally {
      querySet.destroy();
      resolve.destroy();
    }
  }

  private async adamwNow(h: AdamWHyper): Promise<void> {
    this.usable('adamwStep()');
    if (!this.haveGrads) throw new AppError('ERR_NO_GRADS', 'webgpu backend: adamwStep() before forwardBackward()', 500, 'compute a gradient first');
    if (!this.moments) {
      const mk = (l: string) => this.device.createBuffer({ size: this.layout.floats * 4, usage: STORAGE(), label: l });
      this.moments = { m: mk('adam_m'), v: mk('adam_v'), t: 0 };
    }
    const mo = this.moments;
    mo.t++;
    const enc = this.device.createCommandEncoder({ label: 'adamw' });
    const pass = enc.beginComputePass({ label: 'adamw' });
    const uniforms: GPUBuffer[] = [];
    this.table.tensors.forEach((t, i) => {
      const u = this.device.createBuffer({ size: ADAMW_UNIFORM_FLOATS * 4, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'adamw_hp' });
      const hp = adamwUniform({ ...h, weightDecay: h.decay(t.name) ? h.weightDecay : 0 }, mo.t, t.size);
      this.device.queue.writeBuffer(u, 0, hp.buffer, 0, hp.byteLength);
      uniforms.push(u);
      const sl = (b: GPUBuffer) => ({ buffer: b, offset: this.layout.offsets[i] * 4, size: t.size * 4 });
      this.rt.encode(pass, this.rt.prepare(adamwSpec(t.size), [sl(this.params), sl(this.grads), sl(mo.m), sl(mo.v), u]));
    });
    pass.end();
    this.device.queue.submit([enc.finish()]);
    await this.device.queue.onSubmittedWorkDone();
    for (const u of uniforms) u.destroy();
  }

  resetMoments(): void {
    // In order with the queued work: steps queued before it use the old moments.
    void this.serial(async () => {
      const mo = this.moments;
      this.moments = undefined;
      mo?.m.destroy();
      mo?.v.destroy();
    });
  }

  getParams(): Promise<Float32Array> {
    return this.serial(() => this.getParamsNow());
  }

  private async getParamsNow(): Promise<Float32Array> {
    this.usable('getParams()');
    const enc = this.device.createCommandEncoder({ label: 'get-params' });
    const [raw] = await this.submitAndRead(enc, [{ src: this.params, bytes: this.layout.floats * 4 }], 'getParams()');
    return this.unpad(raw);
  }

  /** One command encoder with one compute pass holding `list`, in order (not yet submitted). */
  protected encodePass(label: string, list: Dispatch[]): GPUCommandEncoder {
    const enc = this.device.createCommandEncoder({ label });
    const pass = enc.beginComputePass({ label });
    for (const d of list) this.rt.encode(pass, d);
    pass.end();
    return enc;
  }

  /** The embedding backward's index of the batch's tokens (rows per token, their positions). */
  protected writeEmbeddingIndex(step: RecordedStep, batch: MicroBatch): void {
    const idx = buildEmbeddingIndex(Int32Array.from(batch.inputs), this.config.vocabSize);
    this.device.queue.writeBuffer(step.buffers.rowStart, 0, idx.rowStart.buffer, 0, idx.rowStart.byteLength);
    this.device.queue.writeBuffer(step.buffers.positions, 0, idx.positions.buffer, 0, idx.positions.byteLength);
  }

  /** The padded device layout (read back) to the table's packed order. */
  protected unpad(raw: ArrayBuffer): Float32Array {
    const padded = new Float32Array(raw);
    const out = new Float32Array(this.table.total);
    this.table.tensors.forEach((t, i) => out.set(padded.subarray(this.layout.offsets[i], this.layout.offsets[i] + t.size), t.offset));
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.device.removeEventListener('uncapturederror', this.onUncaptured);
    this.step?.destroy();
    this.params.destroy();
    this.grads.destroy();
    this.moments?.m.destroy();
    this.moments?.v.destroy();
    if (this.ownsDevice) this.device.destroy();
  }
}
