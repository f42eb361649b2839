// --mode diloco on the coordinator (docs/diloco.md): the state of DiLoCo rounds beside the Trainer
// (which keeps the parameters, the data cursor, the exactly-once ledger, history and counters).
//
//   params (trainer.params)  the outer weights theta, changed only by the outer step
//   published                what workers hold: published_{v+1} = published_v + decode(update_v),
//                            computed with the same float32 adds as the workers' UpdateHandler,
//                            so both sides hold bit-identical weights. theta - published is the
//                            coordinator's error feedback for what lossy updates did not carry.
//                            --compress sparse (SparseLoCo): the outer step has no momentum and
//                            is published exactly (sparse32), so published == theta: the workers
//                            train from the outer weights themselves, their error feedback stands
//                            in for the momentum (a lossy top-k of a dense Nesterov step left the
//                            workers training from weights that lagged theta, and their deltas,
//                            taken from that stale point, kept being applied to theta: diverged).
//   pool                     rows (epoch, id) owed to training: a worker that misses a round gives
//                            its rows back here; the next round takes them before new ones.
//   round                    the running round: its leases (H micro-batches per worker), the
//                            accepted deltas, quorum and grace state.
// A round closes when every lease is answered, or when the quorum is met and the grace window has
// passed (unanswered leases go back to the pool; their late deltas are refused). Then: the
// token-weighted mean of the accepted deltas (float64; or a robust rule: --aggregate), the outer
// step, the ledger records the accepted rows, step + 1, and the next published update.
// Checkpoints carry the outer momentum (in the m slot), the round and the rows owed (running
// round included), so a resumed run loses and doubles nothing.

import { decode, encode, packedBytes, sparseSum, type CodecName, type CodecParams, DEFAULT_CODEC_PARAMS, type PackedVector } from '../../shared/diloco/codec.ts';
import { OuterNesterov, weightedMeanOf } from '../../shared/diloco/outer.ts';
import { AppError } from '../../shared/errors.ts';
import { lrAt, runSchedule, type LrSchedule } from '../../shared/optim/index.ts';
import { encodeOnce } from '../../shared/protocol/parser.ts';
import type { UpdateMsg } from '../../shared/protocol/round.ts';
import type { DilocoStatus } from '../../shared/protocol/dashboard.ts';
import type { CheckpointData } from '../checkpoint/format.ts';
import { outerHyperAt, roundLength, roundStart, type CoordinatorConfig } from '../config.ts';
import { createAggregator } from './create-aggregator.ts';
import type { StepSummary, Trainer } from './trainer.ts';

export interface Row {
  epoch: number;
  id: number;
}

export interface RoundLease {
  id: string;
  round: number;
  version: number;
  workerId: string;
  H: number;
  B: number;
  rows: Row[];
  tokens: number;
  issuedAt: number;
  expiresAt: number;
  /** Sampled for re-computation on the coordinator's CPU (the worker was told to start fresh). */
  recompute?: boolean;
  /**
   * When its delta arrived (valid, in time): from then on the lease does not expire and the round
   * does not close without it while the coordinator judges it (the wait is the coordinator's, not
   * the worker's: with 1,000 workers the judge's queue outlasted the lease and 368 honest deltas
   * were refused LATE, npm run loadtest -- --mode diloco).
   */
  deliveredAt?: number;
}

export interface RoundState {
  round: number;
  version: number;
  startedAt: number;
  /** Live leases by id. */
  active: Map<string, RoundLease>;
  /** Retired lease ids: 'done' or why it was withdrawn. */
  retired: Map<string, 'done' | 'released' | 'expired' | 'cut'>;
  /**
   * Accepted deltas, kept as received (packed: 1 B per parameter with int8, ~2% of that sparse)
   * and decoded one at a time at the close: decoded, 1,000 deltas of tiny held 0.4 GB until the
   * round's outer step (npm run loadtest -- --mode diloco), and one of GPT-2 small is 0.5 GB.
   */
  accepted: Array<{ lease: RoundLease; packed: PackedVector; tokens: number; loss: number; workerId: string }>;
  quorum: number;
  quorumMetAt: number | null;
  /** Leases whose delta arrived and is being judged (RoundLease.deliveredAt). */
  judging: Set<string>;
  participants: number;
  leased: number;
  released: number;
}

/**
 * The codec of the published update for a --compress mode: the deltas' codec (the update is
 * theta - published packed with it; what a lossy one leaves out stays in that difference), except
 * sparse: the SparseLoCo step -lr * mean(sparse deltas) goes down exactly as sparse32.
 */
export function publishCodec(c: CodecName): CodecName {
  return c === 'sparse' ? 'sparse32' : c;
}

export class RoundTrainer {
  readonly outer: OuterNesterov;
  /** What the workers hold (see the header). */
  published: Float32Array;
  /** The last published update (from version - 1 to version), or null. */
  lastUpdate: UpdateMsg | null = null;
  pool: Row[] = [];
  current: RoundState | null = null;
  readonly compress: CodecName;
  readonly codec: CodecParams;
  /** Inner learning-rate schedule, in inner steps. */
  readonly innerSchedule: LrSchedule;
  private seq = 0;
  /** Lease ids of the previous round (LATE vs UNKNOWN_TASK after it closed). */
  private previous = new Map<string, 'done' | 'late'>();
  /** Bytes of deltas accepted / updates published (payload arrays; the socket counts the rest). */
  deltaBytes = 0;
  updateBytes = 0;
  /** Deltas accepted since start (for the compression ratio). */
  acceptedDeltas = 0;

  constructor(
    readonly trainer: Trainer,
    readonly cfg: CoordinatorConfig,
  ) {
    this.outer = new OuterNesterov(trainer.paramCount);
    this.published = new Float32Array(trainer.params);
    this.compress = (cfg.compress ?? 'int8') as CodecName;
    this.codec = { ...DEFAULT_CODEC_PARAMS, topk: cfg.sparseTopk };
    // The run's schedule laid over its inner steps (the rounds of the trainer's horizon, each of its
    // --round-warmup / --inner-steps length): --warmup-steps and --stable-fraction count inner steps,
    // as a sync run of the same tokens counts its steps. (Built from the trainer's schedule in rounds,
    // a 5-round run clamped its warm-up to 5 rounds, which made WSD hold the peak to the end: no decay.)
    this.innerSchedule = runSchedule(cfg, roundStart(cfg, trainer.schedule.totalSteps));
  }

  get round(): number {
    return this.trainer.step;
  }

  /** Learning rates of inner steps [0, H) of `round` (the schedule runs over the inner steps of the rounds before + j). */
  lrs(round: number, H: number): number[] {
    const j0 = roundStart(this.cfg, round);
    return Array.from({ length: H }, (_, j) => lrAt(j0 + j, this.innerSchedule));
  }

  /** Inner steps of `round` for the fastest worker: --round-warmup's entry, else --inner-steps. */
  roundH(round: number): number {
    return roundLength(this.cfg, round);
  }

  /**
   * The codec of round `round`'s deltas: --compress, except the first --dense-rounds rounds of a
   * sparse run, which send int8 (a dense warm-up: a top-1.5% round from the initial weights moved
   * the tiny model's held-out loss only from 5.5 to 4.95, an int8 one to 2.57).
   */
  codecOf(round: number): CodecName {
    return this.compress === 'sparse' && round < this.cfg.denseRounds ? 'int8' : this.compress;
  }

  /** Begin a round; null when max-steps is reached or one is running. */
  begin(now: number, participants: number): RoundState | null {
    if (this.current || this.trainer.finished) return this.current;
    const quorum = Math.max(1, Math.min(this.cfg.quorum ?? participants, participants));
    this.current = { round: this.round, version: this.trainer.version, startedAt: now, active: new Map(), retired: new Map(), accepted: [], quorum, quorumMetAt: null, judging: new Set(), participants, leased: 0, released: 0 };
    return this.current;
  }

  /** `n` rows for a lease: owed rows first, then the sampler's next ones. */
  takeRows(n: number): Row[] {
    const out = this.pool.splice(0, n);
    while (out.length < n) {
      const s = this.trainer.sampler.next(n - out.length);
      for (const id of s.ids) out.push({ epoch: s.epoch, id });
    }
    return out;
  }

  lease(workerId: string, H: number, B: number, rows: Row[], tokens: number, now: number, leaseMs: number): RoundLease {
    const r = this.current!;
    const l: RoundLease = { id: `${this.trainer.nonce}.r${r.round}.${++this.seq}`, round: r.round, version: r.version, workerId, H, B, rows, tokens, issuedAt: now, expiresAt: now + leaseMs };
    r.active.set(l.id, l);
    r.leased++;
    return l;
  }

  /** A live lease's rows go back to the pool (worker gone, lease expired, round closed without it). */
  release(id: string, why: 'released' | 'expired' | 'cut'): RoundLease | null {
    const r = this.current;
    const l = r?.active.get(id);
    if (!r || !l) return null;
    r.active.delete(id);
    r.judging.delete(id);
    r.retired.set(id, why);
    r.released++;
    this.pool.unshift(...l.rows);
    return l;
  }

  releaseWorker(workerId: string, why: 'released' | 'expired'): RoundLease[] {
    const r = this.current;
    if (!r) return [];
    return [...r.active.values()].filter((l) => l.workerId === workerId).map((l) => this.release(l.id, why)!);
  }

  /** The live lease `taskId` of `workerId`, or why a delta for it is refused. */
  check(taskId: string, workerId: string): RoundLease | { code: 'NOT_YOUR_TASK' | 'LATE' | 'DUPLICATE' | 'UNKNOWN_TASK'; message: string } {
    const r = this.current;
    const l = r?.active.get(taskId);
    if (l) return l.workerId === workerId ? l : { code: 'NOT_YOUR_TASK', message: `round lease ${taskId} is another worker's` };
    const why = r?.retired.get(taskId) ?? this.previous.get(taskId);
    if (why === 'done') return { code: 'DUPLICATE', message: `round lease ${taskId} was already answered` };
    if (why || taskId.startsWith(this.trainer.nonce + '.')) return { code: 'LATE', message: `round lease ${taskId} is over (${why ?? 'its round closed'}); late deltas are refused and its rows were returned to the pool` };
    return { code: 'UNKNOWN_TASK', message: `round lease ${taskId} was never issued by this coordinator` };
  }

  /** Record an accepted delta (kept packed; decoded at the round's close). */
  accept(l: RoundLease, packed: PackedVector, tokens: number, loss: number, now: number): void {
    const r = this.current!;
    r.active.delete(l.id);
    r.judging.delete(l.id);
    r.retired.set(l.id, 'done');
    r.accepted.push({ lease: l, packed, tokens, loss, workerId: l.workerId });
    this.acceptedDeltas++;
    if (r.quorumMetAt === null && r.accepted.length >= r.quorum) r.quorumMetAt = now;
  }

  /** True when the running round should close now. */
  closable(now: number): boolean {
    const r = this.current;
    if (!r) return false;
    if (r.active.size === 0) return true;
    // After the grace, unanswered leases are cut, but not one whose delta is being judged.
    return r.quorumMetAt !== null && now - r.quorumMetAt >= this.cfg.roundGraceMs && r.judging.size === 0;
  }

  /** `l`'s delta arrived: it is judged before the lease can expire or be cut. */
  deliver(l: RoundLease, now: number): void {
    l.deliveredAt = now;
    this.current?.judging.add(l.id);
  }

  /**
   * Close the running round: unanswered leases go back to the pool; with accepted deltas, the
   * outer step and the next published update. Returns the history point (null: nothing accepted,
   * the round is dropped and its rows are owed again).
   */
  close(now: number, workers: number): { point: StepSummary | null; cut: RoundLease[] } {
    const r = this.current;
    if (!r) throw new AppError('ERR_ROUND_STATE', 'round trainer: close() without a round (bug)', 500);
    const cut = [...r.active.keys()].map((id) => this.release(id, 'cut')!);
    this.previous = new Map();
    for (const [id, s] of r.retired) this.previous.set(id, s === 'done' ? 'done' : 'late');
    this.current = null;
    if (r.accepted.length === 0) return { point: null, cut };
    const P = this.trainer.paramCount;
    let g: Float64Array | Float32Array;
    if (this.cfg.aggregate === 'mean') {
      const scratch = new Float32Array(P);
      g = weightedMeanOf(r.accepted.length, (k) => r.accepted[k].tokens, (k) => decode(r.accepted[k].packed, scratch), P);
    } else {
      const agg = createAggregator(this.cfg.aggregate, P, { normLimit: this.cfg.normLimit });
      agg.begin(r.round);
      for (const a of r.accepted) agg.add(decode(a.packed), a.tokens, a.workerId);
      g = new Float32Array(P);
      agg.finish(g);
    }
    let ss = 0;
    for (let i = 0; i < P; i++) ss += g[i] * g[i];
    const hyper = outerHyperAt(this.cfg, r.round, this.trainer.schedule.totalSteps);
    const sparseUpdate = publishCodec(this.compress) !== 'sparse32' ? null
      : this.codecOf(r.round) === 'int8' ? this.sparseStep(g, hyper.lr, 'int8')
      : this.sparseStep(g, hyper.lr, 'sparse32', this.cfg.aggregate === 'mean' ? r.accepted : null);
    if (!sparseUpdate) this.outer.step(this.trainer.params, g, hyper);
    const tokens = r.accepted.reduce((a, x) => a + x.tokens, 0);
    const loss = r.accepted.reduce((a, x) => a + x.loss * x.tokens, 0) / Math.max(1, tokens);
    const rows = new Map<number, number[]>();
    for (const a of r.accepted) for (const row of a.lease.rows) rows.set(row.epoch, [...(rows.get(row.epoch) ?? []), row.id]);
    const fromVersion = this.trainer.version;
    const point = this.trainer.recordOuterStep({ rows, tokens, loss, lr: this.lrs(r.round, 1)[0], norm: Math.sqrt(ss), startedAt: r.startedAt, now, workers, leased: r.leased, released: r.released });
    this.publish(fromVersion, sparseUpdate);
    return { point, cut };
  }

  /**
   * The SparseLoCo outer step: u = -lr * g in float32 (zero wherever every delta is zero), packed
   * as sparse32 or sparsesum (both exact); a dense warm-up round (--dense-rounds) packs it as int8 and applies the
   * decoded step itself (its rounding is not carried: at most half an int8 step per value, once).
   * Then theta = published = published + decode(packed), the same float32 adds a worker makes.
   */
  private sparseStep(g: Float64Array | Float32Array, lr: number, codec: 'sparse32' | 'int8', mean: Array<{ packed: PackedVector; tokens: number }> | null = null): PackedVector {
    const P = this.trainer.paramCount;
    let u: Float32Array = new Float32Array(P);
    // With the plain token-weighted mean the step is also sparsesum(the deltas as received): the
    // same float64 sums (its decode is the one applied here), 2.25 B per kept value instead of
    // 6 B per nonzero of the union; whichever is smaller goes down.
    let sum: PackedVector | null = null;
    if (mean && mean.every((a) => a.packed.codec === 'sparse')) {
      let total = 0;
      for (const a of mean) total += a.tokens;
      sum = sparseSum(mean.map((a) => a.packed), mean.map((a) => a.tokens / total), -lr);
      u = decode(sum);
    } else for (let i = 0; i < P; i++) u[i] = -lr * g[i];
    let packed = encode(u, codec, this.codec);
    if (sum && packedBytes(sum) < packedBytes(packed)) packed = sum;
    const d = decode(packed); // what the workers will add, whichever form went down
    const next = new Float32Array(P);
    for (let i = 0; i < P; i++) next[i] = this.published[i] + d[i];
    this.published = next;
    this.trainer.params.set(next);
    return packed;
  }

  /**
   * The update message from `fromVersion`: `applied` (already added to published), or
   * published += decode(encode(params - published)).
   */
  private publish(fromVersion: number, applied: PackedVector | null): void {
    let packed = applied;
    if (!packed) {
      const p = this.trainer.params;
      const u = new Float32Array(p.length);
      for (let i = 0; i < u.length; i++) u[i] = p[i] - this.published[i];
      packed = encode(u, publishCodec(this.compress), this.codec);
      const d = decode(packed);
      const next = new Float32Array(p.length);
      for (let i = 0; i < next.length; i++) next[i] = this.published[i] + d[i];
      this.published = next;
    }
    // Packed once, the same frame for every worker (shared/protocol/parser.ts encodeOnce).
    this.lastUpdate = encodeOnce({ round: this.trainer.step - 1, fromVersion, version: this.trainer.version, step: this.trainer.step, update: packed });
  }

  /** A checkpoint of trainer + rounds: outer momentum in the m slot, owed rows in meta.diloco. */
  snapshot(meta: { preset: string; config: Record<string, unknown> }): CheckpointData {
    const d = this.trainer.snapshot(meta);
    // Rows of the running round (leased or accepted: its outer step has not happened) and the pool.
    const c = this.current;
    const owed = [...(c ? [...c.active.values(), ...c.accepted.map((a) => a.lease)].flatMap((l) => l.rows) : []), ...this.pool];
    d.meta.diloco = { round: this.round, published: true, owed: owed.map((r) => [r.epoch, r.id]) };
    d.m = this.outer.buf;
    d.v = this.published;
    return d;
  }

  /** After trainer.restore(d): the outer momentum, the published weights and the owed rows. */
  restore(d: CheckpointData, where: string): void {
    const x = d.meta.diloco;
    if (!x) {
      throw new AppError('ERR_CHECKPOINT_MISMATCH', `checkpoint ${where} was written in --mode sync; this run is --mode diloco`, 400, 'start with the same --mode, or use another --run-dir');
    }
    this.outer.load(d.m);
    this.published = new Float32Array(d.v);
    this.pool = x.owed.map(([epoch, id]) => ({ epoch, id }));
    this.current = null;
    this.lastUpdate = null;
  }
}

/** The diloco part of /api/status. */
export function dilocoStatus(rt: RoundTrainer, wire: { bytesIn: number; bytesOut: number }): DilocoStatus {
  const r = rt.current;
  const tokens = rt.trainer.tokensTrained;
  const P = rt.trainer.paramCount;
  const rounds = rt.trainer.step;
  const packed = rt.deltaBytes + rt.updateBytes;
  return {
    innerSteps: rt.cfg.innerSteps,
    compress: rt.compress,
    // The running round's outer hyper-parameters (--outer-lr-end / --outer-momentum-end move them).
    outerLr: outerHyperAt(rt.cfg, rt.round, rt.trainer.schedule.totalSteps).lr,
    outerMomentum: outerHyperAt(rt.cfg, rt.round, rt.trainer.schedule.totalSteps).momentum,
    running: r ? {
      round: r.round, quorum: r.quorum, participants: r.participants,
      leases: [...[...r.active.values()].map((l) => ({ l, done: false })), ...r.accepted.map((a) => ({ l: a.lease, done: true }))]
        .map(({ l, done }) => ({ workerId: l.workerId, H: l.H, rows: l.rows.length, done })),
    } : null,
    deltaBytes: rt.deltaBytes,
    updateBytes: rt.updateBytes,
    bytesPerToken: tokens > 0 ? (wire.bytesIn + wire.bytesOut) / tokens : null,
    compressionRatio: packed > 0 ? (4 * P * (rt.acceptedDeltas + rounds)) / packed : null,
    owed: rt.pool.length,
  };
}
