// `npm run loadtest -- --mode diloco`: the deltas of one worker process's simulated round workers.
// The coordinator scores every delta by the loss change it causes on its own round's rows
// (coordinator/security/delta-judge.ts): a random vector is refused and its sender banned, so a
// synthetic delta cannot do. What it does instead, once per (weights version, H) and process: H
// real inner AdamW steps (shared/diloco/inner.ts runRound on the CPU reference, fresh moments) on
// the rows of the first such task a worker of this process received, packed with the round's
// codec; every worker of the process leased that version and H sends those bytes. On the synthetic
// data (next token = previous + 1 in every row) a delta trained on one worker's rows lowers the loss
// on any other's, so the judge accepts it as it would the worker's own round; the cost is one
// round of tiny-model compute per process and round, not per worker, so the coordinator is still
// what is measured. The published weights are tracked as a worker does (full `params`, or the
// previous version + decode(`update`) with the same float32 adds: worker-web/client/round-handler.ts).

import { decode, encode, type PackedVector } from '../../shared/diloco/codec.ts';
import { HostInnerEngine, runRound } from '../../shared/diloco/inner.ts';
import type { ModelConfig } from '../../shared/model/config.ts';
import { createCpuBackend } from '../../shared/model/cpu-backend.ts';
import { buildParameterTable } from '../../shared/model/parameters.ts';
import type { RoundTaskMsg, UpdateMsg } from '../../shared/protocol/round-messages.ts';

/** Published weights kept per process (a round's workers hold the newest; late ones one before). */
const KEEP_VERSIONS = 3;

export interface RoundDelta { packed: PackedVector; loss: number }

export class RoundDeltas {
  private readonly weights = new Map<number, Float32Array>();
  private readonly deltas = new Map<string, Promise<RoundDelta>>();
  private engine: HostInnerEngine | null = null;
  /** Inner rounds actually computed (one per version and H). */
  computed = 0;

  constructor(private readonly model: ModelConfig) {}

  has(version: number): boolean {
    return this.weights.has(version);
  }

  /** Full weights of `version` (a `params` message; every worker of the process gets the same). */
  setParams(version: number, params: Float32Array): void {
    if (!this.weights.has(version)) this.keep(version, params);
  }

  /** `update`: the next version = held + decode(update), false when this process lacks fromVersion. */
  applyUpdate(u: UpdateMsg): boolean {
    if (this.weights.has(u.version)) return true;
    const held = this.weights.get(u.fromVersion);
    if (!held) return false;
    const d = decode(u.update);
    const next = new Float32Array(held.length);
    for (let i = 0; i < next.length; i++) next[i] = held[i] + d[i];
    this.keep(u.version, next);
    return true;
  }

  private keep(version: number, w: Float32Array): void {
    this.weights.set(version, w);
    for (const v of [...this.weights.keys()].sort((a, b) => a - b).slice(0, -KEEP_VERSIONS)) this.weights.delete(v);
    for (const k of [...this.deltas.keys()]) if (Number(k.split(':')[0]) < version - KEEP_VERSIONS) this.deltas.delete(k);
  }

  /** The packed delta for `task` (computed on the first task of its version and H in this process). */
  deltaFor(task: RoundTaskMsg): Promise<RoundDelta> {
    const key = `${task.version}:${task.H}:${task.compress}`;
    let p = this.deltas.get(key);
    if (!p) {
      p = this.compute(task);
      this.deltas.set(key, p);
    }
    return p;
  }

  private async compute(task: RoundTaskMsg): Promise<RoundDelta> {
    const start = this.weights.get(task.version);
    if (!start) throw new Error(`round ${task.round}: this process holds no weights of version ${task.version}`);
    this.engine ??= new HostInnerEngine(createCpuBackend(this.model), buildParameterTable(this.model));
    const engine = this.engine;
    // One round at a time on the shared engine (its weights and moments are one set).
    const run = this.queue.then(async () => {
      engine.resetMoments();
      const r = await runRound(engine, start, task, { ...task.hyper, lrs: task.lrs }, { between: () => new Promise<void>((res) => setImmediate(res)) });
      if (r.nonFinite > 0) throw new Error(`round ${task.round}: ${r.nonFinite} NaN/Inf values in the inner steps`);
      this.computed++;
      return { packed: encode(r.delta, task.compress, task.codec), loss: r.loss };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private queue: Promise<unknown> = Promise.resolve();
}
