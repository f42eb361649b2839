// What the HTTP layer (ours and colleagues' routers) may see of the running coordinator.

import type { StatusSnapshot, EvalPoint } from '../../shared/protocol/dashboard.ts';
import type { CoordinatorConfig } from '../config.ts';
import type { LiveModel } from '../generation/generate.ts';
import type { WorkerHub } from '../server/hub.ts';
import type { EventBus } from '../server/events.ts';
import type { Trainer } from '../train/trainer.ts';

export interface CoordinatorContext {
  config: CoordinatorConfig;
  preset: string;
  seqLen: number;
  trainer: Trainer;
  hub: WorkerHub;
  bus: EventBus;
  adminToken: string;
  runDir: string;
  status(): StatusSnapshot;
  evals(): EvalPoint[];
  /** The live model (parameters are the trainer's own array: copy before long use). */
  getModel(): LiveModel;
  checkpointNow(reason: string): { step: number; file: string };
  /** --redis: this process's part of the shared run (operator commands go through it); null otherwise. */
  cluster?: () => ClusterControl | null;
}

/** What the admin routes need of a --redis run: commands that reach the leader or the worker's process. */
export interface ClusterControl {
  admin(cmd: 'pause' | 'resume'): Promise<void>;
  kick(workerId: string): Promise<boolean>;
}
