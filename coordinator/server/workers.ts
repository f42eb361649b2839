// The coordinator's record of each worker: identity, plan, connection, liveness and counters
// (tasks, samples, tokens, throughput, rejections by code). Survives reconnects via resumeId.

import type { Socket } from 'socket.io';
import type { WorkerPlan } from '../../shared/memory/plan.ts';
import type { HelloMsg, RejectCode } from '../../shared/protocol/messages.ts';
import type { WorkerRow } from '../../shared/protocol/dashboard.ts';

export interface WorkerRecord {
  id: string;
  socket: Socket | null;
  hello: HelloMsg;
  plan: WorkerPlan;
  state: WorkerRow['state'];
  joinedAt: number;
  lastSeen: number;
  /** Parameter version last sent to it (-1: none). */
  paramsVersion: number;
  /** Live lease id, if any (kept after expiry until the worker answers: see hub). */
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
}

export class WorkerRegistry {
  readonly byId = new Map<string, WorkerRecord>();
  private counter = 0;

  newId(): string {
    return `w${++this.counter}-${Math.random().toString(36).slice(2, 6)}`;
  }

  /** Connected workers whose plan makes them data-parallel replicas. */
  replicas(): WorkerRecord[] {
    return [...this.byId.values()].filter((w) => w.socket && w.plan.role === 'replica');
  }

  connected(): WorkerRecord[] {
    return [...this.byId.values()].filter((w) => w.socket);
  }

  countReject(w: WorkerRecord, code: RejectCode): void {
    w.rejected++;
    w.rejectedByCode[code] = (w.rejectedByCode[code] ?? 0) + 1;
  }

  /** Forget long-gone workers so the table stays bounded. */
  prune(now: number, keepMs = 10 * 60_000, max = 500): void {
    for (const w of this.byId.values()) {
      if (!w.socket && now - w.lastSeen > keepMs) this.byId.delete(w.id);
    }
    if (this.byId.size > max) {
      const gone = [...this.byId.values()].filter((w) => !w.socket).sort((a, b) => a.lastSeen - b.lastSeen);
      for (const w of gone.slice(0, this.byId.size - max)) this.byId.delete(w.id);
    }
  }

  row(w: WorkerRecord): WorkerRow {
    return {
      id: w.id,
      name: w.hello.name,
      backend: w.hello.backend,
      adapter: w.hello.adapter.description || `${w.hello.adapter.vendor} ${w.hello.adapter.architecture}`.trim(),
      isSoftware: w.hello.adapter.isSoftware,
      state: w.state,
      role: w.plan.role,
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
