// Pipeline formation (issue 12): which stage workers form which complete pipelines, which blocks
// each holds, and the micro-batch they run. The live coordinator calls formPipelines() with the
// workers that cannot be replicas; `npm run simulate` (cluster.ts) calls the same function, so
// both answer the same for the same inputs.
//
// 1. Candidates sorted by budget (largest first; equal budgets: measured-faster first, so a slow
//    worker is the one left over) are grouped until the group can hold a complete chain (fewest
//    stages: every boundary costs a relay and a bubble).
// 2. A group's order: the ends (first and last stage) both hold wte, so the largest budgets go
//    there; with measured speeds the fastest are tried at the ends as well; each order also
//    reversed. Every order is cut and the best kept.
// 3. Cut: contiguous block ranges, at least one block per stage, every stage within its budget
//    (stage-memory.ts: 20 B/param + one micro-batch's activations + inputs for inFlight) and its
//    adapter limits, minimising the slowest stage's time per token (FLOPs / measured speed; equal
//    speeds when unknown): a DP over (stage, last block), O(stages x blocks^2).
// 4. Micro-batch: the largest (<= maxMicroBatch) for which some order has a feasible cut.
// Rebalancing is the caller's, with hysteresis: shouldRebalance() (Petals' 1/0.75 rule).

import { AppError } from '../errors.ts';
import { validateModelConfig, type ModelConfig } from '../model/config.ts';
import { WEBGPU_DEFAULT_LIMITS } from './plan.ts';
import { blockParams, modelParams, type Breakdown } from './rules.ts';
import {
  pipelineParams, stageActivations, stageBreakdown, stageFlopsPerToken, stageLimitProblem, stageParams, stageShape,
  type StageLimits, type StageShape,
} from './stage-memory.ts';
import { formatBytes } from './units.ts';

export interface StageCandidate extends StageLimits {
  id: string;
  budgetBytes: number;
  /** Measured speed on the scale of the whole model (wholeModelTokensPerSec() converts a stage's); absent: equal to the others. */
  tokensPerSec?: number;
}

export interface PlannedStage {
  workerId: string;
  /** Blocks [from, to). */
  layers: [number, number];
  embeddings: boolean;
  head: boolean;
  params: number;
  /** 20 B/param x params. */
  paramBytes: number;
  /** One micro-batch's activations + stage inputs for inFlight + boundary buffers (stage-memory.ts). */
  activationBytes: number;
  budgetBytes: number;
  /** weights / gradients / Adam / activations (the rule's 4 B/param + activationBytes), for the memory bars. */
  breakdown: Breakdown;
  reason: string;
}

export interface PlannedPipeline {
  stages: PlannedStage[];
  microBatch: number;
  seqLen: number;
  inFlight: number;
  /** GPipe's bubble with `inFlight` micro-batches over n stages: (n - 1) / (inFlight + n - 1). */
  expectedBubble: number;
  /** Estimated tokens/s (only when every member's speed is known). */
  tokensPerSec?: number;
}

export interface PipelineOptions {
  /** Tokens per sequence (the training rows' length). */
  seqLen: number;
  /** Largest micro-batch (sequences) to plan; default as large as memory allows. */
  maxMicroBatch?: number;
  /** Micro-batches in flight per pipeline; default the number of its stages. */
  inFlight?: number;
  /** Inference: weights only at this many bytes per parameter (the simulator's --mode infer). */
  inferBytesPerParam?: number;
}

export interface PipelineFormation {
  pipelines: PlannedPipeline[];
  leftOver: Array<{ id: string; reason: string }>;
}

/** Petals' rule: move workers only when the proposed plan is faster than the current by more than 1/0.75. */
export const REBALANCE_RATIO = 0.75;

export function shouldRebalance(currentTokensPerSec: number, proposedTokensPerSec: number): boolean {
  for (const [n, v] of [['currentTokensPerSec', currentTokensPerSec], ['proposedTokensPerSec', proposedTokensPerSec]] as const) {
    if (!Number.isFinite(v) || v < 0) {
      throw new AppError('ERR_PIPELINE_PLAN', `shouldRebalance: ${n} must be a finite number >= 0, got ${String(v)}`, 400, 'pass measured tokens/s (0 when nothing runs)');
    }
  }
  return proposedTokensPerSec > currentTokensPerSec / REBALANCE_RATIO;
}

/** GPipe: m micro-batches over n stages keep each stage busy m of (m + n - 1) slots. */
export function gpipeBubble(stages: number, inFlight: number): number {
  return (stages - 1) / (inFlight + stages - 1);
}

/**
 * Tokens/s of a pipeline whose stages hold `layers` and run at `tokensPerSec` (whole-model scale):
 * the slowest stage sets the pace, the bubble takes its share.
 */
export function estimatePipelineTokensPerSec(c: ModelConfig, stages: Array<{ layers: [number, number]; tokensPerSec: number }>, inFlight: number): number {
  const flopsRate = (tps: number) => tps * 6 * modelParams(c);
  let worst = 0;
  for (const s of stages) worst = Math.max(worst, stageFlopsPerToken(c, stageShape(c, s.layers[0], s.layers[1])) / flopsRate(s.tokensPerSec));
  return (1 - gpipeBubble(stages.length, inFlight)) / worst;
}

interface Member { id: string; budget: number; speed: number; known: boolean; limits: StageLimits }
interface GroupPlan { mb: number; orderIndex: number; shapes: StageShape[]; bottleneck: number }

/**
 * Answers by (model, options, the group's figures), shared across calls: the simulator's churn
 * Monte Carlo re-plans the same few groups thousands of times. Pure data, bounded, cleared when full.
 */
const memoCache = new Map<string, boolean | GroupPlan>();
const MEMO_MAX = 20_000;
interface Cut { shapes: StageShape[]; bottleneck: number }

const DEFAULTS = { maxBufferSize: WEBGPU_DEFAULT_LIMITS.maxBufferSize, maxStorageBufferBindingSize: WEBGPU_DEFAULT_LIMITS.maxStorageBufferBindingSize };
const MB_SEARCH_CAP = 1 << 16;

function check(c: ModelConfig, cands: StageCandidate[], o: PipelineOptions): void {
  validateModelConfig(c);
  const bad = (msg: string, hint: string): never => { throw new AppError('ERR_PIPELINE_PLAN', `formPipelines: ${msg}`, 400, hint); };
  if (!Number.isInteger(o.seqLen) || o.seqLen < 1 || o.seqLen > c.contextLength) bad(`seqLen must be an integer in 1..${c.contextLength}, got ${o.seqLen}`, 'pass the training rows\' length');
  if (o.maxMicroBatch !== undefined && !(Number.isInteger(o.maxMicroBatch) && o.maxMicroBatch >= 1)) bad(`maxMicroBatch must be an integer >= 1, got ${o.maxMicroBatch}`, 'leave it out for no cap');
  if (o.inFlight !== undefined && !(Number.isInteger(o.inFlight) && o.inFlight >= 1)) bad(`inFlight must be an integer >= 1, got ${o.inFlight}`, 'leave it out for one per stage');
  if (o.inferBytesPerParam !== undefined && !(o.inferBytesPerParam > 0)) bad(`inferBytesPerParam must be > 0`, 'e.g. 2 for fp16');
  const seen = new Set<string>();
  for (const k of cands) {
    if (typeof k.id !== 'string' || !k.id || seen.has(k.id)) bad(`candidate ids must be distinct non-empty strings (got ${JSON.stringify(k.id)})`, 'use worker ids');
    seen.add(k.id);
    for (const f of ['budgetBytes', 'tokensPerSec', 'maxBufferSize', 'maxStorageBufferBindingSize'] as const) {
      const v = k[f];
      if ((v !== undefined || f === 'budgetBytes') && !(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
        bad(`candidate ${k.id}: ${f} must be a positive finite number, got ${String(v)}`, f === 'budgetBytes' ? 'bytes the worker may use' : 'leave it out when unknown');
      }
    }
  }
}

/** The pipeline planner; see the header. Deterministic for the same inputs. */
export function formPipelines(c: ModelConfig, candidates: StageCandidate[], opts: PipelineOptions): PipelineFormation {
  check(c, candidates, opts);
  const seq = opts.seqLen;
  const infer = opts.inferBytesPerParam;
  const L = c.nLayer;
  const known = candidates.filter((k) => k.tokensPerSec !== undefined).map((k) => k.tokensPerSec!).sort((a, b) => a - b);
  // Unknown speeds count as the median of the known ones (all equal when none is known).
  const fallback = known.length ? known[Math.floor(known.length / 2)] : 1;
  const members: Member[] = candidates.map((k) => ({
    id: k.id, budget: Math.floor(k.budgetBytes), speed: (k.tokensPerSec ?? fallback) * 6 * modelParams(c), known: k.tokensPerSec !== undefined,
    limits: { maxBufferSize: k.maxBufferSize, maxStorageBufferBindingSize: k.maxStorageBufferBindingSize },
  })).sort((a, b) => b.budget - a.budget || b.speed - a.speed || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  const bytesOf = (s: StageShape, mb: number, inFlight: number) => infer !== undefined
    ? infer * stageParams(c, s) : 20 * stageParams(c, s) + stageActivations(c, s, mb, seq, inFlight).total;
  const fits = (m: Member, s: StageShape, mb: number, inFlight: number) =>
    bytesOf(s, mb, inFlight) <= m.budget && (infer !== undefined || stageLimitProblem(c, s, mb, seq, m.limits, DEFAULTS) === undefined);
  const flops = (s: StageShape) => infer !== undefined ? 2 * ((s.to - s.from) * blockParams(c) + (s.head ? c.vocabSize * c.nEmbd : 0)) : stageFlopsPerToken(c, s);

  /** Min-max DP over contiguous cuts for one order; null if no cut fits. */
  function bestCut(order: Member[], mb: number, inFlight: number): Cut | null {
    const n = order.length;
    if (n > L) return null;
    const cost: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(L + 1).fill(Infinity));
    const from: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(L + 1).fill(-1));
    cost[0][0] = 0;
    for (let i = 1; i <= n; i++) {
      const hi = i === n ? L : L - (n - i);
      // The last stage ends at L; the first starts at 0.
      for (let j = i === n ? L : i; j <= hi; j++) {
        for (let k = i === 1 ? 0 : i - 1; k < (i === 1 ? 1 : j); k++) {
          if (cost[i - 1][k] === Infinity) continue;
          const s = stageShape(c, k, j);
          if (!fits(order[i - 1], s, mb, inFlight)) continue;
          const t = Math.max(cost[i - 1][k], flops(s) / order[i - 1].speed);
          if (t < cost[i][j]) { cost[i][j] = t; from[i][j] = k; }
        }
      }
    }
    if (cost[n][L] === Infinity) return null;
    const shapes: StageShape[] = [];
    for (let i = n, j = L; i >= 1; j = from[i][j], i--) shapes.unshift(stageShape(c, from[i][j], j));
    return { shapes, bottleneck: cost[n][L] };
  }

  const ordersOf = (g: Member[]): Member[][] => {
    const ends = (l: Member[]) => l.length < 3 ? l : [l[0], ...l.slice(2), l[1]];
    const bySpeed = [...g].sort((a, b) => b.speed - a.speed || b.budget - a.budget);
    // Each also reversed: which end (embeddings or the heavier head) suits the larger/faster worker depends on the model.
    const all = [g, ends(g), ends(bySpeed)].flatMap((o) => [o, [...o].reverse()]);
    const keys = new Set<string>();
    return all.filter((o) => { const k = o.map((m) => m.id).join('\u0000'); if (keys.has(k)) return false; keys.add(k); return true; });
  };
  const inFlightOf = (n: number) => opts.inFlight ?? n;
  // Groups of the same members' figures (budget, speed, limits, in order) get the same answer: a cluster of
  // many equal volunteers is planned once, not once per pipeline.
  const sig = (g: Member[]) => g.map((m) => `${m.budget}/${m.speed}/${m.limits.maxBufferSize}/${m.limits.maxStorageBufferBindingSize}`).join('|');
  const ctx = `${JSON.stringify(c)}|${seq}|${opts.maxMicroBatch}|${opts.inFlight}|${infer}|`;
  if (memoCache.size > MEMO_MAX) memoCache.clear();
  const feasibleAt = (g: Member[], mb: number) => {
    const key = `${ctx}${mb}#${sig(g)}`;
    let ok = memoCache.get(key) as boolean | undefined;
    if (ok === undefined) memoCache.set(key, (ok = ordersOf(g).some((o) => bestCut(o, mb, inFlightOf(g.length)) !== null)));
    return ok;
  };

  const leftOver: PipelineFormation['leftOver'] = [];
  const pool: Member[] = [];
  const one = (m: Member, s: StageShape) => fits(m, s, 1, 1);
  for (const m of members) {
    const mid = stageShape(c, Math.min(1, L - 1), Math.min(1, L - 1) + 1);
    if (one(m, mid) || one(m, stageShape(c, 0, 1)) || one(m, stageShape(c, L - 1, L))) { pool.push(m); continue; }
    const need = bytesOf(L > 2 ? mid : stageShape(c, 0, 1), 1, 1);
    leftOver.push({ id: m.id, reason: `too small for a stage: one block with one micro-batch of 1 x ${seq} tokens needs ${formatBytes(need)} (${need} bytes), its budget is ${formatBytes(m.budget)}` });
  }

  const pipelines: PlannedPipeline[] = [];
  let next = 0;
  while (next < pool.length) {
    const group: Member[] = [];
    let ok = false;
    for (let k = next; k < pool.length && group.length < L; k++) {
      group.push(pool[k]);
      if ((ok = feasibleAt(group, 1))) break;
    }
    if (!ok) break;
    next += group.length;
    pipelines.push(plan(group));
  }
  const rest = pool.slice(next);
  const restBytes = rest.reduce((a, m) => a + m.budget, 0);
  const needParams = pipelineParams(c, Math.min(2, L));
  // Say which end nobody can hold (usually wte or the logits against a binding limit) before blaming the total.
  const endProblem = (s: StageShape, what: string): string | undefined => {
    if (rest.length === 0 || rest.some((m) => fits(m, s, 1, 2))) return undefined;
    const m = rest[0];
    const why = infer === undefined ? stageLimitProblem(c, s, 1, seq, m.limits, DEFAULTS) : undefined;
    return `none of the ${rest.length} remaining candidate(s) can hold ${what} even with one sequence of ${seq} tokens (the largest, ${m.id}: ${why ?? `needs ${formatBytes(bytesOf(s, 1, 2))}, has ${formatBytes(m.budget)}`})`;
  };
  const why = (L > 1 ? endProblem(stageShape(c, L - 1, L), `the last stage (blocks [${L - 1}, ${L}) + ln_f + LM head)`)
    ?? endProblem(stageShape(c, 0, 1), 'the first stage (wte + wpe + block 0)') : undefined)
    ?? `the ${rest.length} remaining candidate(s) hold ${formatBytes(restBytes)} together, too little for a complete pipeline (${needParams.toLocaleString('en-US')} params with wte on both ends x ${infer ?? 20} B = ${formatBytes(needParams * (infer ?? 20))}, plus activations, at least one block per stage)`;
  for (const m of rest) leftOver.push({ id: m.id, reason: `left over: ${why}` });
  return { pipelines, leftOver };

  function plan(group: Member[]): PlannedPipeline {
    const n = group.length;
    const inFlight = inFlightOf(n);
    const key = `${ctx}plan#${sig(group)}`;
    let memo = memoCache.get(key) as GroupPlan | undefined;
    if (!memo) {
      let lo = 1;
      if (infer === undefined) {
        // Largest feasible micro-batch: feasibility falls as mb grows (memory and buffers grow with it).
        let hi = opts.maxMicroBatch ?? MB_SEARCH_CAP;
        if (opts.maxMicroBatch === undefined) {
          let probe = 2;
          while (probe <= MB_SEARCH_CAP && feasibleAt(group, probe)) probe *= 2;
          hi = Math.min(probe, MB_SEARCH_CAP);
        }
        while (lo < hi) {
          const mid = Math.floor((lo + hi + 1) / 2);
          if (feasibleAt(group, mid)) lo = mid; else hi = mid - 1;
        }
      }
      let best: { orderIndex: number; cut: Cut } | undefined;
      ordersOf(group).forEach((order, orderIndex) => {
        const cut = bestCut(order, lo, inFlight);
        if (cut && (!best || cut.bottleneck < best.cut.bottleneck)) best = { orderIndex, cut };
      });
      memo = { mb: lo, orderIndex: best!.orderIndex, shapes: best!.cut.shapes, bottleneck: best!.cut.bottleneck };
      memoCache.set(key, memo);
    }
    const mb = memo.mb;
    const order = ordersOf(group)[memo.orderIndex];
    const cut: Cut = { shapes: memo.shapes, bottleneck: memo.bottleneck };
    const stages = cut.shapes.map((s, i): PlannedStage => {
      const m = order[i];
      const params = stageParams(c, s);
      const act = infer !== undefined ? 0 : stageActivations(c, s, mb, seq, inFlight).total;
      const paramBytes = (infer ?? 20) * params;
      const ends = [s.embeddings ? 'embeddings (wte, wpe)' : '', s.head ? 'ln_f + LM head (tied wte, a second copy)' : ''].filter(Boolean).join(' + ');
      const total = paramBytes + act;
      return {
        workerId: m.id, layers: [s.from, s.to], embeddings: s.embeddings, head: s.head, params, paramBytes, activationBytes: act,
        budgetBytes: m.budget,
        breakdown: infer !== undefined ? { weights: paramBytes, gradients: 0, optimizer: 0, activations: 0 } : stageBreakdown(c, s, mb, seq, inFlight),
        reason: `stage ${i} of ${n}: blocks [${s.from}, ${s.to})${ends ? ` + ${ends}` : ''}, ${params.toLocaleString('en-US')} params x ${infer ?? 20} B = ${formatBytes(paramBytes)}`
          + (infer !== undefined ? '' : ` + activations of one micro-batch of ${mb} x ${seq}, inputs for ${inFlight} in flight and boundary buffers ${formatBytes(act)}`)
          + ` = ${formatBytes(total)} of its ${formatBytes(m.budget)} (${Math.round((100 * total) / m.budget)}%)`,
      };
    });
    const allKnown = order.every((m) => m.known);
    return {
      stages, microBatch: mb, seqLen: seq, inFlight, expectedBubble: gpipeBubble(n, inFlight),
      ...(allKnown ? { tokensPerSec: (1 - gpipeBubble(n, inFlight)) / cut.bottleneck } : {}),
    };
  }
}
