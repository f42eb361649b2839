// The simulator as one function: validated input (the same for the CLI and POST /api/simulate)
// -> one self-explanatory JSON result (rule, explicit estimate, buffer flags, cluster plan,
// churn replan, churn Monte Carlo). Every byte count is in bytes, with GB/GiB text beside it.

import { z } from 'zod';
import { AppError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { simulateChurn, type ChurnResult } from './churn.ts';
import { planCluster, type ClusterOptions, type ClusterPlan } from './cluster.ts';
import { replanCluster, type ReplanResult } from './replan.ts';
import { parseDeviceSpec, summariseDevices } from './devices.ts';
import { estimateModel, type Estimate } from './estimate.ts';
import { shapeFromConfig, shapeFromParams, shapeFromPreset, type ModelShape } from './model-shape.ts';
import { parseBandwidth, parseBytes, parseDuration } from './units.ts';

const sizeOrBytes = z.union([z.number().positive(), z.string().min(1)]);
const durationOrSeconds = z.union([z.number().positive(), z.string().min(1)]);

export const modelConfigSchema = z.object({
  vocabSize: z.number().int().positive(),
  contextLength: z.number().int().positive(),
  nLayer: z.number().int().positive(),
  nHead: z.number().int().positive(),
  nEmbd: z.number().int().positive(),
}).strict();

export const simulateInputSchema = z.object({
  /** A preset name (tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl). */
  model: z.string().min(1).optional(),
  /** A bare parameter count, e.g. 7e9. */
  params: z.number().positive().optional(),
  /** A model config (our field names). */
  config: modelConfigSchema.optional(),
  /** Layers to split a bare parameter count into (default inferred). */
  layers: z.number().int().positive().optional(),
  mode: z.enum(['train', 'infer']).default('train'),
  precision: z.enum(['fp32', 'fp16', 'bf16', 'int8']).default('fp32'),
  /** Micro-batch (sequences) and sequence length for the explicit estimate and the step. */
  batch: z.number().int().positive().optional(),
  seq: z.number().int().positive().optional(),
  /** Sequences per optimizer step across the cluster (default 64). */
  globalBatch: z.number().int().positive().optional(),
  /** Largest micro-batch a pipeline plans (the coordinator's --max-micro-batch). */
  maxMicroBatch: z.number().int().positive().optional(),
  /** Device spec, e.g. "100x8GiB,20x24GiB,1x80GB" or "4x16GiB@20000/1Gbps". */
  cluster: z.string().min(1).optional(),
  /** The coordinator's link, e.g. "1Gbps". */
  coordinatorLink: z.string().min(1).optional(),
  maxBufferSize: sizeOrBytes.optional(),
  maxStorageBufferBindingSize: sizeOrBytes.optional(),
  /** Device ids that leave (from the plan's assignments). */
  leave: z.array(z.number().int().nonnegative()).optional(),
  /** Devices that join, as a device spec. */
  join: z.string().min(1).optional(),
  churn: z.object({
    meanSession: durationOrSeconds,
    meanOffline: durationOrSeconds.optional(),
    horizon: durationOrSeconds.optional(),
    trials: z.number().int().positive().max(1000).optional(),
    seed: z.number().int().nonnegative().optional(),
    distribution: z.enum(['exponential', 'lognormal']).optional(),
  }).strict().optional(),
}).strict();

export type SimulateInput = z.input<typeof simulateInputSchema>;

export interface SimulateResult {
  model: string;
  params: number;
  mode: 'train' | 'infer';
  precision: 'fp32' | 'fp16' | 'bf16' | 'int8';
  bytesPerParam: number;
  totalBytes: number;
  breakdown: Estimate['breakdown'];
  unit: 'bytes';
  estimate: Estimate;
  config?: ModelConfig;
  cluster?: ClusterPlan & { spec: string };
  change?: ReplanResult;
  churn?: ChurnResult;
}

/** Parses unknown input (JSON body or CLI-built object); throws ERR_SIMULATE_INPUT listing every problem. */
export function parseSimulateInput(raw: unknown): z.output<typeof simulateInputSchema> {
  const r = simulateInputSchema.safeParse(raw);
  if (!r.success) {
    throw new AppError('ERR_SIMULATE_INPUT', `simulate: invalid input: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`, 400,
      'give exactly one of model / params / config; see docs/memory.md');
  }
  const v = r.data;
  const given = [v.model, v.params, v.config].filter((x) => x !== undefined).length;
  if (given !== 1) {
    throw new AppError('ERR_SIMULATE_INPUT', `simulate: give exactly one of model, params, config (got ${given})`, 400,
      'e.g. --model gpt2, --params 7e9 or --config model.json');
  }
  if ((v.leave || v.join) && !v.cluster) throw new AppError('ERR_SIMULATE_INPUT', 'simulate: leave/join need a cluster', 400, 'add --cluster SPEC');
  if (v.churn && !v.cluster) throw new AppError('ERR_SIMULATE_INPUT', 'simulate: churn needs a cluster', 400, 'add --cluster SPEC');
  return v;
}

function toBytes(v: number | string | undefined, where: string): number | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'number' ? v : parseBytes(v, where);
}

function toSeconds(v: number | string | undefined, where: string): number | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'number' ? v : parseDuration(v, where);
}

export function simulate(raw: unknown): SimulateResult {
  const v = parseSimulateInput(raw);
  let shape: ModelShape;
  if (v.model !== undefined) shape = shapeFromPreset(v.model);
  else if (v.config !== undefined) shape = shapeFromConfig(v.config);
  else shape = shapeFromParams(v.params!, v.layers);
  const limits = {
    maxBufferSize: toBytes(v.maxBufferSize, 'maxBufferSize'),
    maxStorageBufferBindingSize: toBytes(v.maxStorageBufferBindingSize, 'maxStorageBufferBindingSize'),
  };
  const estimate = estimateModel(shape, { mode: v.mode, precision: v.precision, batch: v.batch, seq: v.seq, limits });
  const result: SimulateResult = {
    model: shape.name, params: shape.params, mode: v.mode, precision: v.precision, bytesPerParam: estimate.bytesPerParam,
    totalBytes: estimate.totalBytes, breakdown: estimate.breakdown, unit: 'bytes', estimate,
    ...(shape.config ? { config: shape.config } : {}),
  };
  if (v.cluster) {
    const devices = parseDeviceSpec(v.cluster);
    const opts: ClusterOptions = {
      mode: v.mode, precision: v.precision, seq: v.seq, globalBatch: v.globalBatch, maxMicroBatch: v.maxMicroBatch,
      coordinatorLinkBps: v.coordinatorLink ? parseBandwidth(v.coordinatorLink, 'coordinatorLink') : undefined,
      ...limits,
    };
    const plan = planCluster(shape, devices, opts);
    result.cluster = { spec: summariseDevices(devices), ...plan };
    if (v.leave || v.join) {
      result.change = replanCluster(shape, devices, plan, { leave: v.leave, join: v.join ? parseDeviceSpec(v.join) : undefined }, opts);
    }
    if (v.churn) {
      result.churn = simulateChurn(shape, devices, opts, {
        meanSessionSeconds: toSeconds(v.churn.meanSession, 'churn.meanSession')!,
        meanOfflineSeconds: toSeconds(v.churn.meanOffline, 'churn.meanOffline'),
        horizonSeconds: toSeconds(v.churn.horizon, 'churn.horizon'),
        trials: v.churn.trials, seed: v.churn.seed, distribution: v.churn.distribution,
      });
    }
  }
  return result;
}
