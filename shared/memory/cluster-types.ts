// The shapes of a cluster plan (shared/memory/cluster.ts), its step estimate (step-estimate.ts)
// and re-plans (replan.ts), in a leaf module so those three import it and not each other.

import type { Breakdown, Mode, Precision } from './rules.ts';
import type { Bytes } from './units.ts';

export interface ClusterOptions {
  mode: Mode;
  precision: Precision;
  /** Tokens per sequence for the step estimate; default the context length (1024 for a bare count). */
  seq?: number;
  /** Sequences per optimizer step across the cluster; default 64. */
  globalBatch?: number;
  /** The coordinator's own link, bits/s; default 1 Gbps. */
  coordinatorLinkBps?: number;
  /** Adapter limits assumed for every device (WebGPU defaults otherwise), for the micro-batch check. */
  maxBufferSize?: number;
  maxStorageBufferBindingSize?: number;
  /** Largest micro-batch a pipeline runs (the coordinator's --max-micro-batch); default as memory allows. */
  maxMicroBatch?: number;
}


export type AssignmentRole = 'replica' | 'stage' | 'unassigned';

export interface Assignment {
  device: number;
  spec: string;
  memoryBytes: number;
  gflops: number;
  linkBps: number;
  role: AssignmentRole;
  /** Index of the data-parallel unit (a replica or a pipeline) it belongs to. */
  unit?: number;
  /** Stage index inside its pipeline. */
  stage?: number;
  /** Blocks [start, end) it holds (replica: all). */
  layerRange?: [number, number];
  /** Holds wte + wpe (a replica, or a pipeline's first stage; false for a bare count). */
  embeddings?: boolean;
  /** Holds ln_f and the LM head, tied to wte, its own copy (a replica, or a pipeline's last stage). */
  head?: boolean;
  params: number;
  /** params x bytes/param. */
  bytes: number;
  breakdown: Breakdown;
  /** bytes / memoryBytes. */
  usedShare: number;
  /**
   * Training with a known config: the micro-batch (sequences) and sequence length whose explicit
   * activations fit beside 16 B/param of state and under the binding limit (0 = not even one token).
   */
  microBatch?: number;
  seqLen?: number;
  reason: string;
}

export interface StagePlan {
  pipeline: number;
  stage: number;
  device: number;
  layerRange: [number, number];
  embeddings: boolean;
  head: boolean;
  /** Model unit indices [start, end) (with a config: unit 0 = embeddings, 1..L = blocks, L+1 = head). */
  unitRange: [number, number];
  params: number;
  /** Training with a config: 20 B/param + the activations of its micro-batch (stage-memory.ts); else params x bytes/param. */
  bytes: number;
}

export interface DataParallelUnit {
  index: number;
  kind: 'replica' | 'pipeline';
  devices: number[];
  /** Throughput of this unit, tokens/s (a pipeline: its slowest stage with boundary transfers, less the bubble). */
  tokensPerSec: number;
  /** A pipeline's micro-batches in flight and its GPipe bubble, (n - 1) / (inFlight + n - 1). */
  inFlight?: number;
  bubble?: number;
  /** Used in the step estimate (false: a spare that would slow the step). */
  active?: boolean;
}

export interface StepEstimate {
  seq: number;
  globalBatch: number;
  tokensPerStep: number;
  /** FLOPs per token: 6 x params (train) or 2 x params (infer forward). */
  flopsPerToken: number;
  /** Data-parallel units the estimate uses (the fastest ones; see arithmetic). */
  activeUnits: number;
  computeSeconds: number;
  transferSeconds: number;
  stepSeconds: number;
  tokensPerSec: number;
  /** The arithmetic, one line each. */
  arithmetic: string[];
}

export interface ClusterPlan {
  devices: number;
  capacityBytes: number;
  capacity: Bytes;
  /** Bytes one full copy of the model needs under the rule. */
  neededBytes: number;
  needed: Bytes;
  fits: boolean;
  replicas: number;
  pipelines: number;
  stages: StagePlan[];
  unassigned: Array<{ device: number; spec: string; reason: string }>;
  assignments: Assignment[];
  units: DataParallelUnit[];
  step: StepEstimate | null;
  reason: string;
  unit: 'bytes';
}
