// The coordinator's record of each worker: identity, plan, connection, liveness and counters
// (tasks, samples, tokens, throughput, rejections by code). Survives reconnects via resumeId.
//
// The registry OWNS these records: everyone else reads them as WorkerView (read-only) and changes
// them only through the methods below, so every change of a worker's state has one place and a
// name (markIdle, markComputing, markWaiting...). The gateway attaches and detaches connections;
// the scheduler and its assigners mark work; nobody assigns fields from outside.

import type { Socket } from 'socket.io';
import type { WorkerPlan } from '../../shared/memory/plan.ts';
import type { HelloMsg, RejectCode, WaitMsg } from '../../shared/protocol/messages.ts';
import type { WorkerRow } from '../../shared/protocol/dashboard.ts';
import type { EventBus } from './events.ts';

export interface WorkerRecord {
  id: string;
  socket: Socket | null;
  hello: HelloMsg;
  plan: WorkerPlan;
  state: WorkerRow['state'];
  joinedAt: number;
  lastSeen: number;
  /** When it was last heard from on the coordinator's awake clock (awake-clock.ts): liveness. */
  heardAt: number;
  /** Parameter version last sent to it (-1: none). */
  paramsVersion: number;
  /** Live lease id, if any (kept after expiry until the worker answers: see replica-assigner). */
  lease: string | null;
  /** When the current/last lease was issued, and its samples (throughput of late answers). */
  leaseIssuedAt: number;
  leaseSize: number;
  tasksDone: number;
  samplesDone: number;
  tokensDone: number;
  rejected: number;
  rejectedByCode: Partial<Record<RejectCode, number>>;
  /** Samples per second, EMA over accepted tasks (0: unknown yet). */
  samplesPerSec: number;
  tokensPerSec: number;
  /** Last `wait` code sent (to avoid repeating it). */
  waitCode: string | null;
  /** A stage worker's place in a pipeline (stage-assigner.ts); null: not in one (waiting). */
  stage: { layers: [number, number]; pipeline: string } | null;
}

/** A worker record as everyone but the registry sees it. */
export type WorkerView = Readonly<WorkerRecord>;

export class WorkerRegistry {
  private readonly records = new Map<string, WorkerRecord>();
  private counter = 0;
  /**
   * Connected workers, and those of each role, computed once per change of the connected set
   * (connect, detach) instead of once per call: the scheduler asks after every result, and with
   * 1,000 workers a fresh O(N) list each time was a large share of the coordinator's CPU.
   */
  private liveCache: WorkerView[] | null = null;
  private readonly roleCache = new Map<WorkerPlan['role'], WorkerView[]>();

  constructor(private readonly bus: EventBus) {}

  /** Every known worker by id, connected or recently gone. */
  get byId(): ReadonlyMap<string, WorkerView> {
    return this.records;
  }

  /** The registry's own record behind a view (views are the records, read-only outside). */
  private own(w: WorkerView): WorkerRecord {
    return w as WorkerRecord;
  }

  /**
   * A new worker id that `taken` does not refuse. The id counter restarts with the coordinator
   * while bans are loaded from the run directory, so an honest newcomer must not be handed an id
   * that a previous run banned.
   */
  freshId(taken: (id: string) => boolean): string {
    let id = this.newId();
    while (taken(id) || this.records.has(id)) id = this.newId();
    return id;
  }

  private newId(): string {
    return `w${++this.counter}-${Math.random().toString(36).slice(2, 6)}`;
  }

  /**
   * A welcomed connection: the record of `prev` (a resumed id, its counters kept) or a new one
   * with `id`, now idle on `socket` with a fresh plan and no parameters sent.
   */
  connect(prev: WorkerView | undefined, id: string, socket: Socket, hello: HelloMsg, plan: WorkerPlan, now: number, heardAt = now): WorkerView {
    const w: WorkerRecord = prev ? this.own(prev) : {
      id,
      socket: null,
      hello,
      plan,
      state: 'idle',
      joinedAt: now,
      lastSeen: now,
      heardAt,
      paramsVersion: -1,
      lease: null,
      leaseIssuedAt: 0,
      leaseSize: 0,
      tasksDone: 0,
      samplesDone: 0,
      tokensDone: 0,
      rejected: 0,
      rejectedByCode: {},
      samplesPerSec: 0,
      tokensPerSec: 0,
      waitCode: null,
      stage: null,
    };
    Object.assign(w, { socket, hello, plan, state: 'idle', lastSeen: now, heardAt, paramsVersion: -1, lease: null, waitCode: null, stage: null });
    this.records.set(w.id, w);
    this.invalidate();
    return w;
  }

  /** The connection is gone (left, dead, kicked): no socket, no lease. */
  detach(w: WorkerView, state: 'left' | 'dead' | 'kicked'): void {
    const r = this.own(w);
    r.socket = null;
    r.state = state;
    r.lease = null;
    r.stage = null;
    this.invalidate();
  }

  private invalidate(): void {
    this.liveCache = null;
    this.roleCache.clear();
  }

  /** A message arrived from it: at `now` on the wall clock, `heardAt` on the awake clock. */
  touch(w: WorkerView, now: number, heardAt = now): void {
    const r = this.own(w);
    r.lastSeen = now;
    r.heardAt = heardAt;
  }

  /** Free for the next task (its lease answered, withdrawn or expired). */
  markIdle(w: WorkerView): void {
    const r = this.own(w);
    r.lease = null;
    r.state = 'idle';
  }

  /** It was handed lease `leaseId` of `size` samples at `now`. */
  markComputing(w: WorkerView, leaseId: string, size: number, now: number): void {
    const r = this.own(w);
    r.lease = leaseId;
    r.leaseIssuedAt = now;
    r.leaseSize = size;
    r.state = 'computing';
    r.waitCode = null;
  }

  /**
   * It is told to wait with `code`. Returns false (and changes nothing) when it has no connection
   * or was already told that code, so a wait is sent once.
   */
  markWaiting(w: WorkerView, code: WaitMsg['code']): boolean {
    const r = this.own(w);
    if (!r.socket || r.waitCode === code) return false;
    r.waitCode = code;
    r.state = code === 'paused' ? 'paused' : 'waiting';
    return true;
  }

  /** Forget the waits sent (training resumed: every worker may be told again). */
  clearWaitCodes(): void {
    for (const w of this.connected()) this.own(w).waitCode = null;
  }

  /** It holds blocks `layers` in pipeline `pipeline` now (null: it left its pipeline). */
  markStage(w: WorkerView, stage: { layers: [number, number]; pipeline: string } | null): void {
    this.own(w).stage = stage;
  }

  /** Parameters of `version` were sent to it. */
  markParamsSent(w: WorkerView, version: number): void {
    this.own(w).paramsVersion = version;
  }

  /** An accepted task of `samples` samples and `tokens` tokens. */
  recordDone(w: WorkerView, samples: number, tokens: number): void {
    const r = this.own(w);
    r.tasksDone++;
    r.samplesDone += samples;
    r.tokensDone += tokens;
  }

  /** Throughput EMA from a task of `samples` (and `tokens`; -1: unknown) issued at `sinceMs`. */
  measure(w: WorkerView, samples: number, tokens: number, sinceMs: number, now: number): void {
    const r = this.own(w);
    const sec = Math.max(1e-3, (now - sinceMs) / 1000);
    const alpha = r.samplesPerSec > 0 ? 0.5 : 1;
    r.samplesPerSec = (1 - alpha) * r.samplesPerSec + alpha * (samples / sec);
    if (tokens >= 0) r.tokensPerSec = (1 - alpha) * r.tokensPerSec + alpha * (tokens / sec); // -1: unknown (late answer)
  }

  countReject(w: WorkerView, code: RejectCode): void {
    const r = this.own(w);
    r.rejected++;
    r.rejectedByCode[code] = (r.rejectedByCode[code] ?? 0) + 1;
  }

  /** Connected workers whose plan makes them data-parallel replicas. */
  replicas(): WorkerView[] {
    return this.withRole('replica');
  }

  /** Connected workers whose plan gives them `role` (a shared list: do not change it). */
  withRole(role: WorkerPlan['role']): WorkerView[] {
    let l = this.roleCache.get(role);
    if (!l) this.roleCache.set(role, (l = this.connected().filter((w) => w.plan.role === role)));
    return l;
  }

  /** Connected workers (a shared list: do not change it). */
  connected(): WorkerView[] {
    return (this.liveCache ??= [...this.records.values()].filter((w) => w.socket));
  }

  /** Forget long-gone workers so the table stays bounded. */
  prune(now: number, keepMs = 10 * 60_000, max = 500): void {
    for (const w of this.records.values()) {
      if (!w.socket && now - w.lastSeen > keepMs) this.records.delete(w.id);
    }
    if (this.records.size > max) {
      const gone = [...this.records.values()].filter((w) => !w.socket).sort((a, b) => a.lastSeen - b.lastSeen);
      for (const w of gone.slice(0, this.records.size - max)) this.records.delete(w.id);
    }
  }

  /** Tell the dashboard (bus) that `w` changed: op 'update' unless given. */
  publish(w: WorkerView, op: 'join' | 'leave' | 'update' = 'update'): void {
    this.bus.emit('worker', { op, worker: this.row(w) });
  }

  row(w: WorkerView): WorkerRow {
    return {
      id: w.id,
      name: w.hello.name,
      backend: w.hello.backend,
      adapter: w.hello.adapter.description || `${w.hello.adapter.vendor} ${w.hello.adapter.architecture}`.trim(),
      isSoftware: w.hello.adapter.isSoftware,
      state: w.state,
      // A stage-plan worker outside a pipeline waits for one (issue 12: role 'waiting').
      role: w.plan.role === 'stage' && !w.stage ? 'waiting' : w.plan.role,
      ...(w.stage ? { layers: w.stage.layers, pipeline: w.stage.pipeline } : {}),
      budgetBytes: w.plan.budgetBytes,
      plan: {
        role: w.plan.role,
        budgetBytes: w.plan.budgetBytes,
        trainableParams: w.plan.trainableParams,
        microBatch: w.plan.microBatch,
        seqLen: w.plan.seqLen,
        layerRange: w.plan.layerRange,
        reason: w.plan.reason,
        breakdown: { ...w.plan.breakdown } as unknown as Record<string, number>,
      },
      tasksDone: w.tasksDone,
      samplesDone: w.samplesDone,
      tokensDone: w.tokensDone,
      rejected: w.rejected,
      rejectedByCode: { ...w.rejectedByCode } as Record<string, number>,
      tokensPerSec: w.tokensPerSec,
      lastSeen: w.lastSeen,
      joinedAt: w.joinedAt,
    };
  }
}
