// Churn Monte Carlo: each device of the cluster is a volunteer who comes and goes. Online
// sessions and offline gaps are drawn around their means (exponential by default, or lognormal
// with sigma 1 for the long tail real sessions show; sahajBERT's volunteers averaged 4 h); at every
// arrival or departure the plan is redone keeping whatever the departure did not break
// (planCluster's `keep`). Reports the share of time a full copy of the model is held, the
// time-weighted throughput, and the bytes that churn makes move. Seeded with shared/rng.ts.

import { AppError } from '../errors.ts';
import { Rng } from '../rng.ts';
import type { Device } from './devices.ts';
import type { ModelShape } from './model-shape.ts';
import { planCluster, type ClusterOptions, type ClusterPlan } from './cluster.ts';
import { heldUnitRanges, movedBytesPerParam, newlyHeldParams } from './replan.ts';
import { bytes, formatBytes, type Bytes } from './units.ts';

export interface ChurnOptions {
  /** Mean online session, seconds (e.g. 4 h = 14400). */
  meanSessionSeconds: number;
  /** Mean time offline between sessions, seconds; default 3 x the session (online a quarter of the time). */
  meanOfflineSeconds?: number;
  /** Simulated time per trial, seconds; default 24 h. */
  horizonSeconds?: number;
  /** Independent runs; default 20. */
  trials?: number;
  seed?: number;
  distribution?: 'exponential' | 'lognormal';
}

export interface ChurnTrial {
  coveredShare: number;
  meanTokensPerSec: number;
  meanOnline: number;
  events: number;
  movedBytes: number;
}

export interface ChurnResult {
  devices: number;
  meanSessionSeconds: number;
  meanOfflineSeconds: number;
  /** Expected share of time each device is online: session / (session + offline). */
  availability: number;
  horizonSeconds: number;
  trials: number;
  seed: number;
  distribution: 'exponential' | 'lognormal';
  /** Mean over trials of the share of time a full copy (a replica or a complete pipeline) is online. */
  coveredShare: number;
  coveredShareMin: number;
  coveredShareMax: number;
  /** Time-weighted tokens/s (0 while not covered), mean over trials. */
  expectedTokensPerSec: number;
  /** Tokens/s with every device online, for comparison. */
  allOnlineTokensPerSec: number;
  meanOnline: number;
  arrivalsAndDeparturesPerHour: number;
  /** Weights + Adam moments (training) that re-planning makes move, per hour. */
  movedBytesPerHour: number;
  movedPerHour: Bytes;
  perTrial: ChurnTrial[];
  reason: string;
}

/** A bound on (arrivals + departures) x devices, each event re-plans the cluster: ~5 s of CPU. */
export const MAX_CHURN_WORK = 10_000_000;

function draw(rng: Rng, mean: number, dist: 'exponential' | 'lognormal'): number {
  if (dist === 'exponential') return -mean * Math.log(1 - rng.next());
  const sigma = 1;
  return Math.exp(Math.log(mean) - (sigma * sigma) / 2 + sigma * rng.normal());
}

export function simulateChurn(shape: ModelShape, devices: Device[], o: ClusterOptions, c: ChurnOptions): ChurnResult {
  const S = c.meanSessionSeconds;
  const G = c.meanOfflineSeconds ?? 3 * S;
  const H = c.horizonSeconds ?? 86400;
  const trials = c.trials ?? 20;
  const seed = c.seed ?? 1;
  const dist = c.distribution ?? 'exponential';
  for (const [k, v] of [['meanSessionSeconds', S], ['meanOfflineSeconds', G], ['horizonSeconds', H]] as const) {
    if (!(v > 0) || !Number.isFinite(v)) throw new AppError('ERR_MEMORY_CHURN', `churn: ${k} must be a positive number of seconds, got ${v}`);
  }
  if (!Number.isInteger(trials) || trials < 1 || trials > 1000) throw new AppError('ERR_MEMORY_CHURN', `churn: trials must be an integer in 1..1000, got ${trials}`);
  const expectedEvents = trials * (devices.length * (2 * H) / (S + G) + devices.length);
  if (expectedEvents * devices.length > MAX_CHURN_WORK) {
    throw new AppError('ERR_MEMORY_CHURN', `churn: about ${Math.round(expectedEvents)} arrivals/departures x ${devices.length} devices to re-plan, over the ${MAX_CHURN_WORK} limit`, 400,
      'use fewer trials, a shorter horizon or fewer devices');
  }
  const rng = new Rng(seed);
  const availability = S / (S + G);
  const allOnline = planCluster(shape, devices, o);
  const perParam = movedBytesPerParam(o);
  const perTrial: ChurnTrial[] = [];

  for (let t = 0; t < trials; t++) {
    const online = new Array<boolean>(devices.length);
    const nextToggle = new Float64Array(devices.length);
    for (let i = 0; i < devices.length; i++) {
      online[i] = rng.next() < availability;
      // Exponential gaps are memoryless, so the residual of the current period has the same law.
      nextToggle[i] = draw(rng, online[i] ? S : G, dist);
    }
    const planFor = (prev?: ClusterPlan) => planCluster(shape, devices.filter((_, i) => online[i]), o, prev);
    let plan = planFor();
    let now = 0;
    let covered = 0;
    let tokens = 0;
    let onlineTime = 0;
    let events = 0;
    let moved = 0;
    for (;;) {
      let i = 0;
      for (let j = 1; j < devices.length; j++) if (nextToggle[j] < nextToggle[i]) i = j;
      const until = devices.length ? Math.min(nextToggle[i], H) : H;
      const dt = until - now;
      if (plan.fits) covered += dt;
      tokens += dt * (plan.step?.tokensPerSec ?? 0);
      onlineTime += dt * plan.devices;
      now = until;
      if (now >= H) break;
      online[i] = !online[i];
      nextToggle[i] = now + draw(rng, online[i] ? S : G, dist);
      events++;
      const next = planFor(plan);
      const oldHeld = heldUnitRanges(plan, shape);
      for (const [id, r] of heldUnitRanges(next, shape)) moved += newlyHeldParams(shape, oldHeld.get(id), r) * perParam;
      plan = next;
    }
    perTrial.push({ coveredShare: covered / H, meanTokensPerSec: tokens / H, meanOnline: onlineTime / H, events, movedBytes: moved });
  }
  const mean = (f: (x: ChurnTrial) => number) => perTrial.reduce((a, x) => a + f(x), 0) / trials;
  const coveredShare = mean((x) => x.coveredShare);
  const movedBytesPerHour = mean((x) => x.movedBytes) / (H / 3600);
  const expectedTokensPerSec = mean((x) => x.meanTokensPerSec);
  const allOnlineTokensPerSec = allOnline.step?.tokensPerSec ?? 0;
  return {
    devices: devices.length, meanSessionSeconds: S, meanOfflineSeconds: G, availability, horizonSeconds: H, trials, seed,
    distribution: dist, coveredShare,
    coveredShareMin: Math.min(...perTrial.map((x) => x.coveredShare)),
    coveredShareMax: Math.max(...perTrial.map((x) => x.coveredShare)),
    expectedTokensPerSec, allOnlineTokensPerSec,
    meanOnline: mean((x) => x.meanOnline),
    arrivalsAndDeparturesPerHour: mean((x) => x.events) / (H / 3600),
    movedBytesPerHour, movedPerHour: bytes(movedBytesPerHour), perTrial,
    reason: `with each of ${devices.length} devices online ${(availability * 100).toFixed(0)}% of the time (sessions ~${(S / 3600).toFixed(1)} h, gaps ~${(G / 3600).toFixed(1)} h), a full copy is online ${(coveredShare * 100).toFixed(1)}% of the time; expected ${expectedTokensPerSec.toFixed(0)} tokens/s (${allOnlineTokensPerSec.toFixed(0)} with all online); re-planning moves ${formatBytes(movedBytesPerHour)} per hour`,
  };
}
