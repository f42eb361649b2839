// Reputation per worker id (BOINC-style adaptive validation): every worker starts on probation and
// is re-computed on every result; each verified result raises its trust and lowers how often it
// is checked (down to a floor, never zero). A verification mismatch is a strike; bad messages add
// penalty points (weighted by how clearly they are the worker's fault). Enough strikes or points
// ban the worker. Codes an honest worker meets through no fault of its own (LATE after a slow
// lease, UNKNOWN_TASK after a coordinator restart) cost nothing.

import type { RejectCode } from '../../shared/protocol/messages.ts';

export interface ReputationOptions {
  /** Base verification probability once out of probation. */
  verifyRate: number;
  /** Never check less often than this. */
  minVerifyRate: number;
  /** Results always verified for a new worker. */
  probation: number;
  /** Verification mismatches that ban. */
  banAfterMismatches: number;
  /** Penalty points that ban. */
  banPenalty: number;
}

export const DEFAULT_REPUTATION: ReputationOptions = {
  verifyRate: 0.1,
  minVerifyRate: 0.02,
  probation: 2,
  banAfterMismatches: 2,
  banPenalty: 16,
};

/** Penalty points per rejection code (0: not the worker's fault, or not evidence of it). */
export const PENALTY: Record<RejectCode, number> = {
  BAD_SCHEMA: 1,
  PROTOCOL_VERSION: 0,
  NOT_WELCOMED: 0,
  UNKNOWN_TASK: 0,
  NOT_YOUR_TASK: 1,
  LATE: 0,
  DUPLICATE: 1,
  STALE_VERSION: 3, // a stale worker keeps its lease until expiry: make each one count
  WRONG_STEP: 1,
  BAD_LENGTH: 1,
  TOKENS_MISMATCH: 2,
  NON_FINITE: 3, // faulty hardware is banned too: its samples wait for a lease expiry each time
  OUT_OF_RANGE: 1,
  TOO_LARGE: 2,
  RATE_LIMIT: 1,
  BANNED: 0,
  NO_CAPACITY: 0,
  UNAUTHORIZED: 0,
  NORM_OUTLIER: 1, // honest workers can meet it in a loss spike
  VERIFY_FAILED: 0, // counted as a strike instead
  UNVERIFIED: 0, // the coordinator's check failed, not the worker
};

export interface TrustRecord {
  id: string;
  verifiedOk: number;
  mismatches: number;
  penalty: number;
  results: number;
  banned: boolean;
  /** Results always verified for this identity (default: opts.probation; longer for a fresh id from an address with bans). */
  probation?: number;
  /** Multiplier of its verification rate after probation (a fresh id from an address with k recent bans: 1 + k). */
  rateBoost?: number;
  bannedReason?: string;
  bannedAt?: number;
}

export type Verdict = { ban: false } | { ban: true; reason: string };

export class Reputation {
  private readonly byId = new Map<string, TrustRecord>();

  constructor(readonly opts: ReputationOptions = DEFAULT_REPUTATION) {}

  get(id: string): TrustRecord {
    let r = this.byId.get(id);
    if (!r) {
      r = { id, verifiedOk: 0, mismatches: 0, penalty: 0, results: 0, banned: false };
      this.byId.set(id, r);
    }
    return r;
  }

  isBanned(id: string): boolean {
    return this.byId.get(id)?.banned === true;
  }

  /** Probability that this worker's next accepted-looking result is re-computed. */
  verifyProbability(id: string): number {
    const r = this.get(id);
    const probation = r.probation ?? this.opts.probation;
    if (r.verifiedOk < probation || r.mismatches > 0) return 1;
    // Halve the rate every 8 verified results after probation (adaptive replication).
    const p = this.opts.verifyRate * 0.5 ** ((r.verifiedOk - probation) / 8);
    return Math.min(1, Math.max(this.opts.minVerifyRate, p) * (r.rateBoost ?? 1));
  }

  /** Trust in [0, 1): how much verified history the worker has (for the dashboard). */
  trust(id: string): number {
    const r = this.get(id);
    if (r.banned) return 0;
    return r.verifiedOk / (r.verifiedOk + 4 + 8 * r.mismatches + r.penalty);
  }

  recordVerified(id: string, ok: boolean): Verdict {
    const r = this.get(id);
    if (ok) {
      r.verifiedOk++;
      return { ban: false };
    }
    r.mismatches++;
    if (r.mismatches >= this.opts.banAfterMismatches) return this.ban(r, `${r.mismatches} results failed re-computation`);
    return { ban: false };
  }

  recordRejected(id: string, code: RejectCode): Verdict {
    const r = this.get(id);
    r.penalty += PENALTY[code] ?? 1;
    if (r.penalty >= this.opts.banPenalty) return this.ban(r, `${r.penalty} penalty points from rejected messages (last: ${code})`);
    return { ban: false };
  }

  /** An accepted result slowly forgives isolated glitches (one NaN from a flaky GPU). */
  recordAccepted(id: string): void {
    const r = this.get(id);
    r.results++;
    r.penalty = Math.max(0, r.penalty - 1);
  }

  /** Longer probation for a fresh identity (coordinator/security: an address with recent bans). */
  setProbation(id: string, results: number, rateBoost = 1): void {
    const r = this.get(id);
    r.probation = results;
    r.rateBoost = rateBoost;
  }

  /** A ban from the run directory's ban list (a previous run of this coordinator). */
  restoreBan(id: string, reason: string, at: number): void {
    const r = this.get(id);
    r.banned = true;
    r.bannedReason = reason;
    r.bannedAt = at;
  }

  /** Penalty points for evidence that is not proof (e.g. a sparse delta refused by the loss score). */
  addPenalty(id: string, points: number, reason: string): Verdict {
    const r = this.get(id);
    r.penalty += points;
    if (r.penalty >= this.opts.banPenalty) return this.ban(r, `${r.penalty} penalty points (last: ${reason})`);
    return { ban: false };
  }

  /**
   * A ban decided outside the reputation's counters (a diloco delta refused by the loss score or
   * re-computation: one lie is proof): recorded like any other, so the ban list, the status and a
   * reconnect under the same id see it. `ban: false` when it was banned already.
   */
  banNow(id: string, reason: string): Verdict {
    return this.ban(this.get(id), reason);
  }

  private ban(r: TrustRecord, reason: string): Verdict {
    if (r.banned) return { ban: false };
    r.banned = true;
    r.bannedReason = reason;
    r.bannedAt = Date.now();
    return { ban: true, reason };
  }

  banned(): TrustRecord[] {
    return [...this.byId.values()].filter((r) => r.banned);
  }
}
