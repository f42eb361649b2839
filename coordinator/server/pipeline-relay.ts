// One pipeline share in flight: the GPipe-with-recompute schedule of docs/pipeline.md as a state
// machine, free of sockets (the StageAssigner sends what it returns). A share is a lease of the
// step's samples cut into micro-batches; at most `inFlight` of them are between entering the first
// stage and leaving it again on the way back. The coordinator relays every hop and KEEPS what it
// relayed: each stage's input (for re-runs after churn and for CPU re-computation) and, for
// non-head stages, the gradient w.r.t. their output. Each stage uploads sum_m tokens_m x g_m after
// its last micro-batch; assemble() scatters the stages' sums into one full-size gradient (wte: the
// first stage's embedding part + the head's LM-head part) divided by the share's tokens.
//
// --objective dpo (docs/dpo.md): the lease's rows are pairs (chosen, rejected) with the reference's
// log-probs. Micro-batches are cut on pair boundaries (an even micro-batch size), a micro-batch's
// `tokens` is its pairs, and the head's fwd hop carries the pairs' reference log-probs and beta, so
// the head computes the DPO loss of its micro-batch itself (it runs forward and backward at once);
// the stages below it see an ordinary dIn. The share's result is then weighted by pairs.
//
// Every message is checked against what this share expects (the right stage, a hop that was sent
// and not yet answered, the tokens of the micro-batch): anything else is refused with a code and
// changes nothing.

import type { MicroBatch, StageDpo } from '../../shared/backend.ts';
import { scatterAddStage, type StageTable } from '../../shared/model/stage.ts';
import type { PackedActivations } from '../../shared/pipeline/activation-codec.ts';
import type { RejectCode } from '../../shared/protocol/messages.ts';
import type { HopMsg } from '../../shared/protocol/stage.ts';
import type { Lease } from '../train/step-work.ts';
import type { LeaseBatch } from '../train/trainer.ts';

export interface Micro {
  batch: MicroBatch;
  /** Masked-in positions; --objective dpo: pairs. */
  tokens: number;
  /** --objective dpo: the micro-batch's pairs (rows 0 .. 2 pairs - 1) for the head. */
  dpo?: StageDpo;
  /** Head's answer for this micro-batch. */
  loss?: number;
}

/** A hop to send to stage `stage` of the pipeline. */
export interface Outgoing {
  stage: number;
  hop: HopMsg;
}

export type Refusal = { code: RejectCode; message: string };

export class ShareRun {
  readonly micros: Micro[];
  /** Stage inputs relayed, [stage][micro] (stage 0 reads the micro-batch's token ids). */
  readonly inputs: Array<Array<Float32Array | undefined>>;
  /** Gradients relayed to non-head stages w.r.t. their output, [stage][micro]. */
  readonly dOuts: Array<Array<Float32Array | undefined>>;
  /** Uploaded stage sums (sum_m tokens_m x g_m) and their tokens. */
  readonly grads: Array<{ grads: Float32Array; tokens: number } | undefined>;
  /** Reported compute ms per stage (the bubble). */
  readonly busyMs: number[];
  /** Backward hops finished per stage (the head's fwd counts: it runs forward+backward at once). */
  private readonly bwdDone: number[];
  /** Hops sent and not answered yet: `${stage}:${kind}:${micro}`. */
  private readonly waiting = new Set<string>();
  private entered = 0;
  private left = 0;
  private lossSum = 0;
  readonly tokens: number;
  readonly startedAt: number;

  constructor(
    readonly lease: Lease,
    readonly tables: StageTable[],
    batch: LeaseBatch,
    microBatch: number,
    readonly inFlight: number,
    now: number,
  ) {
    const { B, T } = batch;
    const dpo = batch.dpo;
    if (dpo && microBatch % 2 !== 0) throw new Error(`pipeline-relay: a preference share needs an even micro-batch (whole pairs), got ${microBatch} (bug)`);
    this.micros = [];
    // Every micro-batch has `microBatch` rows: a short last one is padded with mask-0 rows (token
    // 0, no loss, so zero gradient and no tokens), so a fixed-shape stage engine compiles ONE
    // shape, before the share's first hop (the `stage` message carries it).
    for (let b0 = 0; b0 < B; b0 += microBatch) {
      const rows = Math.min(microBatch, B - b0);
      const lo = b0 * T;
      const hi = (b0 + rows) * T;
      const n = microBatch * T;
      const mb: MicroBatch = { B: microBatch, T, inputs: new Int32Array(n), targets: new Int32Array(n), mask: new Uint8Array(n) };
      mb.inputs.set(batch.inputs.subarray(lo, hi));
      mb.targets.set(batch.targets.subarray(lo, hi));
      mb.mask.set(batch.mask.subarray(lo, hi));
      if (dpo) {
        // Whole pairs: rows b0 .. b0 + rows - 1 are pairs b0/2 .. (b0 + rows)/2 - 1.
        this.micros.push({ batch: mb, tokens: rows / 2, dpo: { beta: dpo.beta, refLogProbs: dpo.refLogProbs.slice(b0, b0 + rows) } });
        continue;
      }
      let tokens = 0;
      for (let i = 0; i < mb.mask.length; i++) tokens += mb.mask[i];
      this.micros.push({ batch: mb, tokens });
    }
    const S = tables.length;
    this.inputs = tables.map(() => []);
    this.dOuts = tables.map(() => []);
    this.grads = tables.map(() => undefined);
    this.busyMs = tables.map(() => 0);
    this.bwdDone = tables.map(() => 0);
    this.tokens = this.micros.reduce((a, m) => a + m.tokens, 0);
    this.startedAt = now;
    if (S < 1) throw new Error('pipeline-relay: a share needs at least one stage (bug)');
  }

  get id(): string {
    return this.lease.id;
  }
  get stages(): number {
    return this.tables.length;
  }
  /** Every stage uploaded its gradient. */
  get complete(): boolean {
    return this.grads.every((g) => g !== undefined);
  }

  /** Micro-batches that may enter the first stage now (the in-flight window). */
  admit(): Outgoing[] {
    const out: Outgoing[] = [];
    while (this.entered < this.micros.length && this.entered - this.left < this.inFlight) {
      const m = this.entered++;
      out.push(this.fwdHop(0, m, undefined));
    }
    return out;
  }

  private fwdHop(s: number, m: number, acts: PackedActivations | undefined): Outgoing {
    const mi = this.micros[m];
    const { B, T } = mi.batch;
    const head = s === this.stages - 1;
    const hop: HopMsg = {
      taskId: this.id, micro: m, kind: 'fwd', B, T, tokens: mi.tokens,
      ...(s === 0 ? { inputs: mi.batch.inputs } : { acts }),
      ...(head ? { targets: mi.batch.targets, mask: mi.batch.mask, ...(mi.dpo ? { dpo: mi.dpo } : {}) } : {}),
    };
    this.waiting.add(`${s}:fwd:${m}`);
    return { stage: s, hop };
  }

  private expect(s: number, kind: 'fwd' | 'bwd', m: number): Refusal | null {
    const k = `${s}:${kind}:${m}`;
    if (!this.waiting.has(k)) {
      return { code: 'UNKNOWN_TASK', message: `share ${this.id}: no ${kind} hop of micro-batch ${m} is outstanding at stage ${s}` };
    }
    this.waiting.delete(k);
    return null;
  }

  /** A non-head stage's output for micro `m`: relayed to stage s+1 (its input is kept). */
  onFwd(s: number, m: number, packed: PackedActivations, values: Float32Array, ms: number): Outgoing[] | Refusal {
    if (s === this.stages - 1) return { code: 'BAD_SCHEMA', message: `share ${this.id}: the head stage answers a fwd hop with bwd` };
    const bad = this.expect(s, 'fwd', m);
    if (bad) return bad;
    this.busyMs[s] += ms;
    this.inputs[s + 1][m] = values;
    return [this.fwdHop(s + 1, m, packed)];
  }

  /**
   * A backward answer of stage `s` for micro `m` (the head's carries loss and tokens): dIn is
   * relayed to stage s-1; at the first stage the micro-batch leaves the window and the next enters.
   */
  onBwd(s: number, m: number, dIn: PackedActivations | undefined, values: Float32Array | undefined, loss: number | undefined, tokens: number | undefined, ms: number): Outgoing[] | Refusal {
    const head = s === this.stages - 1;
    const mi = this.micros[m];
    if (!mi) return { code: 'UNKNOWN_TASK', message: `share ${this.id}: no micro-batch ${m}` };
    if (head && tokens !== mi.tokens) {
      return { code: 'TOKENS_MISMATCH', message: `share ${this.id} micro-batch ${m}: tokens ${tokens} != ${mi.tokens} masked-in positions` };
    }
    const bad = this.expect(s, head ? 'fwd' : 'bwd', m);
    if (bad) return bad;
    this.busyMs[s] += ms;
    this.bwdDone[s]++;
    if (head) {
      mi.loss = loss ?? 0;
      this.lossSum += (loss ?? 0) * mi.tokens;
    }
    if (s === 0) {
      this.left++;
      return this.admit();
    }
    this.dOuts[s - 1][m] = values;
    this.waiting.add(`${s - 1}:bwd:${m}`);
    const { B, T } = mi.batch;
    return [{ stage: s - 1, hop: { taskId: this.id, micro: m, kind: 'bwd', B, T, tokens: mi.tokens, grad: dIn } }];
  }

  /** Stage `s`'s gradient sum: accepted once it finished every micro-batch, with their tokens. */
  onGrad(s: number, grads: Float32Array, tokens: number): Refusal | null {
    if (this.grads[s]) return { code: 'DUPLICATE', message: `share ${this.id}: stage ${s} already sent its gradient` };
    if (this.bwdDone[s] !== this.micros.length) {
      return { code: 'OUT_OF_RANGE', message: `share ${this.id}: stage ${s} sent its gradient after ${this.bwdDone[s]} of ${this.micros.length} micro-batches` };
    }
    if (tokens !== this.tokens) return { code: 'TOKENS_MISMATCH', message: `share ${this.id}: stage ${s} reports ${tokens} tokens, the share has ${this.tokens}` };
    this.grads[s] = { grads, tokens };
    return null;
  }

  /** The share's full-size gradient (mean over its tokens) and mean loss. Call when complete. */
  assemble(paramCount: number): { grads: Float32Array; loss: number; tokens: number } {
    const full = new Float32Array(paramCount);
    const scale = this.tokens > 0 ? 1 / this.tokens : 0;
    for (let s = 0; s < this.stages; s++) scatterAddStage(this.tables[s], this.grads[s]!.grads, full, scale);
    return { grads: full, loss: this.tokens > 0 ? this.lossSum / this.tokens : 0, tokens: this.tokens };
  }

  /** 1 - busy / (stages x wall): the share of stage time spent waiting. */
  bubble(now: number): number {
    const wall = Math.max(1, now - this.startedAt);
    const busy = this.busyMs.reduce((a, b) => a + b, 0);
    return Math.min(1, Math.max(0, 1 - busy / (this.stages * wall)));
  }
}
