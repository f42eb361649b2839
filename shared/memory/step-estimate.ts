// Step-time estimate for a cluster plan: per data-parallel unit its token throughput (replicas at
// their GFLOP/s; a pipeline runs `inFlight` micro-batches GPipe-style, so its slowest stage, with
// that stage's activation transfers, sets the pace and the bubble (n - 1) / (inFlight + n - 1)
// takes its share; a training stage recomputes its forward: 8 x params FLOPs, the head stage 6 x,
// stage-memory.ts), what each unit sends and
// receives per step, and how many of the fastest units minimise the step before the coordinator's
// link becomes the bottleneck (the rest stand by as spares). The arithmetic is returned as text.

import type { Device } from './devices.ts';
import type { ModelShape } from './model-shape.ts';
import type { ClusterOptions, DataParallelUnit, StagePlan, StepEstimate } from './cluster-types.ts';
import { gpipeBubble } from './pipeline-plan.ts';
import { blockParams } from './rules.ts';
import { stageFlopsPerToken, stageShape } from './stage-memory.ts';
import { formatBytes, formatDuration } from './units.ts';

function width(shape: ModelShape): number {
  return shape.config?.nEmbd ?? Math.round(Math.cbrt((shape.params * 128) / 12));
}

export function estimateStep(
  shape: ModelShape, o: ClusterOptions, units: DataParallelUnit[], stages: StagePlan[], byId: Map<number, Device>,
  seq: number, globalBatch: number, coordLink: number,
): StepEstimate {
  const P = shape.params;
  const train = o.mode === 'train';
  const flopsPerParamToken = train ? 6 : 2;
  const flopsPerToken = flopsPerParamToken * P;
  const tokensPerStep = seq * globalBatch;
  // Activations crossing a stage boundary per token: the hidden state forward (and its gradient backward), fp32,
  // relayed by the coordinator: a stage's own link carries what it receives and what it sends.
  const boundaryBits = width(shape) * 4 * 8 * (train ? 2 : 1);
  const c = shape.config;
  const stageFlops = (st: StagePlan, last: boolean): number => {
    if (c && train) return stageFlopsPerToken(c, stageShape(c, st.layerRange[0], st.layerRange[1]));
    if (c) return 2 * ((st.layerRange[1] - st.layerRange[0]) * blockParams(c) + (st.head ? c.vocabSize * c.nEmbd : 0));
    return (train ? (last ? 6 : 8) : 2) * st.params;
  };
  const byPipeline = new Map<number, StagePlan[]>();
  for (const st of stages) {
    if (!byPipeline.has(st.pipeline)) byPipeline.set(st.pipeline, []);
    byPipeline.get(st.pipeline)!.push(st);
  }
  for (const l of byPipeline.values()) l.sort((a, b) => a.stage - b.stage);
  for (const u of units) {
    if (u.kind === 'replica') {
      u.tokensPerSec = (byId.get(u.devices[0])!.gflops * 1e9) / flopsPerToken;
    } else {
      const own = byPipeline.get(u.index) ?? [];
      let slowest = 0;
      own.forEach((st, i) => {
        const d = byId.get(st.device)!;
        const boundaries = (i > 0 ? 1 : 0) + (i < own.length - 1 ? 1 : 0);
        slowest = Math.max(slowest, stageFlops(st, i === own.length - 1) / (d.gflops * 1e9) + (boundaries * boundaryBits) / d.linkBps);
      });
      u.inFlight = u.inFlight ?? own.length;
      u.bubble = gpipeBubble(own.length, u.inFlight);
      u.tokensPerSec = (1 - u.bubble) / slowest;
    }
  }
  // Per unit: what it sends (gradients, 4 B/param) and receives (new weights, 4 B/param) each step.
  const stageParams = new Map(stages.map((s) => [s.device, s.params]));
  const comm = new Map<number, { bits: number; worst: number; worstId: number }>();
  for (const u of units) {
    let bits = 0;
    let worst = 0;
    let worstId = u.devices[0];
    for (const id of u.devices) {
      const d = byId.get(id)!;
      const b = (u.kind === 'replica' ? P : stageParams.get(id)!) * 4 * 8;
      bits += b;
      const t = train ? (2 * b) / d.linkBps : 0;
      if (t > worst) { worst = t; worstId = id; }
    }
    comm.set(u.index, { bits: train ? bits : 0, worst, worstId });
  }
  // Use the k fastest units that minimise the step: past some k the coordinator's link is the
  // bottleneck and another unit only adds transfer; the rest stand by as spares (useful under churn).
  const order = [...units].sort((a, b) => b.tokensPerSec - a.tokensPerSec || a.index - b.index);
  let best = { k: 0, step: Infinity, compute: 0, transfer: 0, tps: 0, worst: 0, worstId: -1, bits: 0 };
  let tps = 0;
  let bits = 0;
  let worst = 0;
  let worstId = -1;
  for (let k = 1; k <= order.length; k++) {
    const u = order[k - 1];
    const c = comm.get(u.index)!;
    tps += u.tokensPerSec;
    bits += c.bits;
    if (c.worst > worst) { worst = c.worst; worstId = c.worstId; }
    const compute = tokensPerStep / tps;
    const transfer = Math.max(worst, (2 * bits) / coordLink);
    if (compute + transfer < best.step * (1 - 1e-9)) best = { k, step: compute + transfer, compute, transfer, tps, worst, worstId, bits };
  }
  const active = new Set(order.slice(0, best.k).map((u) => u.index));
  for (const u of units) u.active = active.has(u.index);
  const computeSeconds = best.compute;
  const transferSeconds = best.transfer;
  const arithmetic = [
    `tokens per step = ${globalBatch} sequences x ${seq} = ${tokensPerStep.toLocaleString('en-US')}`,
    `compute = ${flopsPerParamToken} x ${P.toLocaleString('en-US')} params x ${tokensPerStep.toLocaleString('en-US')} tokens / ${(best.tps * flopsPerToken / 1e9).toFixed(0)} GFLOP/s effective over ${best.k} unit(s) (tasks split by throughput) = ${formatDuration(computeSeconds)}`,
  ];
  if (train) {
    const coord = (2 * best.bits) / coordLink;
    arithmetic.push(
      `transfer = max(slowest device: 2 x its params x 4 B over its link = ${formatDuration(best.worst)} (device ${best.worstId}), coordinator: 2 x ${formatBytes(best.bits / 8)} over ${(coordLink / 1e6).toFixed(0)} Mbps = ${formatDuration(coord)}) = ${formatDuration(transferSeconds)}`,
    );
  }
  if (best.k < units.length) {
    arithmetic.push(`${units.length - best.k} of ${units.length} unit(s) stand by as spares: adding them would lengthen the step (their transfer costs more than their compute saves)`);
  }
  const stepSeconds = computeSeconds + transferSeconds;
  arithmetic.push(`step = ${formatDuration(computeSeconds)} + ${formatDuration(transferSeconds)} = ${formatDuration(stepSeconds)}; ${(tokensPerStep / stepSeconds).toFixed(0)} tokens/s`);
  return {
    seq, globalBatch, tokensPerStep, flopsPerToken, activeUnits: best.k, computeSeconds, transferSeconds, stepSeconds,
    tokensPerSec: tokensPerStep / stepSeconds, arithmetic,
  };
}
