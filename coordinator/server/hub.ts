// The worker side of the coordinator, assembled: the WorkerRegistry (worker records), the security
// policy, the Scheduler with one WorkAssigner per worker role (replicas today), and the socket
// WorkerGateway. Each part owns its own state (docs/architecture.md); this class only wires them
// and offers the operator's actions (pause, resume, kick) to the HTTP layer.
//
// Roles: replicas (ReplicaAssigner), pipeline stages (StageAssigner, --mode sync), rounds
// (RoundAssigner, --mode diloco). Another role: implement WorkAssigner (assigner.ts), register it below.

import type { Namespace, Server } from 'socket.io';
import type { Logger } from 'pino';
import { judgeThreadCount, type CoordinatorConfig } from '../config.ts';
import type { BanEntry } from '../security/ban-file.ts';
import { Security } from '../security/security.ts';
import type { Trainer } from '../train/trainer.ts';
import type { EventBus } from './events.ts';
import type { WorkerPort } from './assigner.ts';
import { WorkerGateway } from './gateway.ts';
import { ReplicaAssigner } from './replica-assigner.ts';
import { RoundAssigner } from './round-assigner.ts';
import { StageAssigner } from './stage-assigner.ts';
import { DeltaJudge } from '../security/delta-judge.ts';
import type { RoundTrainer } from '../train/round-trainer.ts';
import { Scheduler, type StepHooks } from './scheduler.ts';
import { WorkerRegistry } from './workers.ts';

export interface HubOptions {
  /** Where workers connect: the default namespace, or (--redis leader) the gateways' `/cluster`. */
  io: Server | Namespace;
  trainer: Trainer;
  config: CoordinatorConfig;
  preset: string;
  seqLen: number;
  bus: EventBus;
  log: Logger;
  hooks: StepHooks;
  /** The run directory's ban list: its path (rewritten on every ban) and the bans read from it. */
  bans?: { file: string; loaded: BanEntry[] };
  /** --mode diloco: the rounds' state (round workers are served by a RoundAssigner). */
  rounds?: RoundTrainer;
  /**
   * What the scheduler and assigners send through (default: the gateway itself). A gateway
   * process of a --redis run holds workers' acks until the leader has their partial
   * (coordinator/cluster/cluster-port.ts).
   */
  port?: (gateway: WorkerGateway, workers: WorkerRegistry) => WorkerPort;
  /** false: no pipeline stages (a --redis process: its slices go to replicas only; docs/scale.md). */
  stages?: boolean;
}

export class WorkerHub {
  readonly workers: WorkerRegistry;
  readonly security: Security;
  readonly scheduler: Scheduler;
  readonly gateway: WorkerGateway;
  /** --mode diloco only. */
  readonly rounds?: RoundAssigner;
  /** --mode diloco only: scores every delta (and re-computes sampled rounds). */
  readonly judge?: DeltaJudge;
  /** --mode sync: pipelines of stage workers (docs/pipeline.md). */
  readonly stages?: StageAssigner;

  constructor(o: HubOptions) {
    this.workers = new WorkerRegistry(o.bus);
    this.security = new Security(o.trainer, o.config, o.bus, o.log, o.bans, () => this.workers.byId.keys());
    this.gateway = new WorkerGateway(o.io, o.trainer, o.config, o.preset, o.seqLen, this.workers, this.security, o.bus, o.log);
    const port = o.port ? o.port(this.gateway, this.workers) : this.gateway;
    this.scheduler = new Scheduler(o.trainer, o.config, this.workers, port, o.bus, o.log, o.hooks);
    // --objective dpo trains through pipelines too: the head stage computes the DPO loss of each
    // micro-batch's pairs (docs/dpo.md "Pipeline stages").
    if (!o.rounds && o.stages !== false) {
      // Registered first: each pass leases the pipelines their throughput share of the step before
      // the replicas (whose lease sizes count replicas only) take what is left.
      this.stages = new StageAssigner(o.trainer, o.config, o.seqLen, this.workers, this.security, port, this.scheduler, o.bus, o.log);
      this.scheduler.register(this.stages);
    }
    this.scheduler.register(new ReplicaAssigner(o.trainer, o.config, this.workers, this.security, port, this.scheduler, o.bus, o.log));
    if (o.rounds) {
      const judge = new DeltaJudge(o.trainer.model, o.trainer.dataset, o.config.normLimit, judgeThreadCount(o.config));
      this.judge = judge;
      this.rounds = new RoundAssigner(o.trainer, o.rounds, o.config, this.workers, this.security, judge, this.gateway, this.scheduler, o.bus, o.log);
      this.scheduler.register(this.rounds);
    }
    this.gateway.open(this.scheduler);
  }

  get paused(): boolean {
    return this.scheduler.paused;
  }

  pause(): void {
    this.scheduler.pause();
  }

  resume(): void {
    this.scheduler.resume();
  }

  /** Disconnect a connected worker (operator); false when no connected worker has that id. */
  kick(id: string): boolean {
    return this.gateway.kick(id);
  }

  /** Tell every worker the coordinator stops, and stop the liveness monitor. */
  shutdown(): void {
    this.gateway.shutdown();
  }

  /** Stop the verification and delta-scoring threads (checks in flight are dropped with their packets). */
  async close(): Promise<void> {
    await Promise.all([this.security.close(), this.judge?.close()]);
  }
}
