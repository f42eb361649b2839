// StageBackend on the CPU reference (shared/model/cpu/stage.ts): what a Node stage worker without
// a GPU runs, the ground truth the WebGPU stage backend is compared with, and what the coordinator
// re-computes a stage's gradient with from the stage inputs it relayed. With `dpo` on the head's
// input (--objective dpo), the head computes the DPO objective of its micro-batch's pairs itself:
// the policy sequence log-probs from its forward's per-position losses, the pair weights
// (shared/model/dpo.ts) and ONE weighted backward; the stages below are unchanged.

import type { StageBackend, StageGradientResult, StageInput } from '../backend.ts';
import { AppError } from '../errors.ts';
import { validateModelConfig, type ModelConfig } from './config.ts';
import { gradStats } from './cpu-backend.ts';
import { CpuStage } from './cpu/stage.ts';
import { sequenceLogProbs } from './cpu/sequence-ops.ts';
import { stagePairFigures } from './dpo.ts';
import { checkStageDOut, checkStageInput, type StageSpec } from './stage.ts';

export class CpuStageBackend implements StageBackend {
  readonly name = 'cpu' as const;
  readonly spec: StageSpec;
  private readonly stage: CpuStage;
  private params: Float32Array | null = null;
  private disposed = false;

  constructor(readonly config: ModelConfig, spec: StageSpec) {
    validateModelConfig(config);
    this.stage = new CpuStage(config, spec, Float32Array);
    this.spec = { from: spec.from, to: spec.to };
  }

  private get where(): string {
    return `cpu stage backend [${this.spec.from}, ${this.spec.to})`;
  }

  private ready(what: string): Float32Array {
    if (this.disposed) throw new AppError('ERR_BACKEND_DISPOSED', `${this.where}: ${what} after dispose()`, 500);
    if (!this.params) throw new AppError('ERR_NO_PARAMS', `${this.where}: ${what} before setParams()`, 500, 'call setParams(stageParams) first');
    return this.params;
  }

  async setParams(stageParams: Float32Array): Promise<void> {
    if (this.disposed) throw new AppError('ERR_BACKEND_DISPOSED', `${this.where}: setParams() after dispose()`, 500);
    const n = this.stage.table.total;
    if (!(stageParams instanceof Float32Array) || stageParams.length !== n) {
      throw new AppError('ERR_PARAM_SIZE', `${this.where}: setParams got ${stageParams?.length} values, the stage needs ${n}`,
        400, 'pass gatherStage(buildStageTable(config, spec), fullParams)');
    }
    this.params = new Float32Array(stageParams); // own copy: the caller may update its vector in place
  }

  async forward(input: StageInput): Promise<Float32Array> {
    const params = this.ready('forward()');
    checkStageInput(this.stage.table, input);
    const fwd = this.stage.run(params, input);
    return new Float32Array(fwd.out ?? this.stage.logits());
  }

  async forwardBackward(input: StageInput, dOut?: Float32Array): Promise<StageGradientResult> {
    const params = this.ready('forwardBackward()');
    checkStageInput(this.stage.table, input);
    checkStageDOut(this.stage.table, input, dOut);
    const t0 = performance.now();
    const fwd = this.stage.run(params, input);
    const t1 = performance.now();
    const grads = new Float32Array(this.stage.table.total);
    let head = fwd.loss ? { loss: fwd.loss.loss, tokens: fwd.loss.tokens } : null;
    let dIn;
    if (head && input.dpo) {
      // DPO head: log pi(row) = -sum of the row's masked CE, float64 in position order (as CpuGpt's
      // sequenceLogProbs), then the pair weights and one weighted backward; tokens = pairs.
      const policy = new Float64Array(input.B);
      sequenceLogProbs(policy, this.stage.losses(), input.B, input.T);
      const fig = stagePairFigures(policy, input.B, input.dpo);
      dIn = this.stage.backward(grads, undefined, fig.rowWeights);
      head = { loss: fig.loss, tokens: fig.d.length };
    } else {
      dIn = this.stage.backward(grads, dOut);
    }
    const t2 = performance.now();
    const { gradNorm, nonFinite } = gradStats(grads);
    return {
      grads, gradNorm, nonFinite,
      ...(dIn ? { dIn: new Float32Array(dIn) } : {}),
      ...(head ?? {}),
      timings: { totalMs: t2 - t0, forwardMs: t1 - t0, backwardMs: t2 - t1, uploadMs: 0, readbackMs: 0 },
    };
  }

  dispose(): void {
    this.disposed = true;
    this.params = null;
  }
}

export function createCpuStageBackend(config: ModelConfig, spec: StageSpec): CpuStageBackend {
  return new CpuStageBackend(config, spec);
}
