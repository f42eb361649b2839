// A task handler is one worker role's work: the coordinator event that carries its tasks, how to
// validate one, what shape to compile before taking work, and how to run one on the engine session
// and send what it produced. The connection protocol (worker-client.ts) routes each handler's
// event to it on its promise chain, in message order, and knows nothing of what the task computes.
// A new role (a pipeline stage, a round of local steps) is a new handler beside replica-handler.ts.

import type { Checked } from '../../shared/protocol/validate.ts';
import type { ServerToClientEvents, WelcomeMsg, WirePlan } from '../../shared/protocol/messages.ts';
import type { EngineSession, WarmUpShape } from './engine-session.ts';
import type { Channel } from './sender.ts';
import type { LogLevel, StatsBook } from './stats.ts';

/** What a handler gets for one task. */
export interface TaskContext {
  readonly session: EngineSession;
  readonly welcome: WelcomeMsg;
  readonly stats: StatsBook;
  /** The connection the task came on: results go there, and only while it lives. */
  readonly channel: Channel;
  /** When the task arrived, ms (its lease counts from then). */
  readonly receivedAt: number;
  log(level: LogLevel, msg: string): void;
}

export interface TaskHandler<T = unknown> {
  /** The plan role this handler works for (welcome.plan.role). */
  readonly role: WirePlan['role'];
  /** The coordinator event that carries its tasks. */
  readonly event: keyof ServerToClientEvents;
  /** Checks a raw task payload; an invalid one is logged and ignored. */
  validate(raw: unknown, welcome: WelcomeMsg): Checked<T>;
  /** The handler builds its own engine (a pipeline stage): the client builds no whole-model one. */
  readonly ownEngine?: boolean;
  /** The micro-batch shape a fixed-shape engine must compile before taking work (none: undefined). */
  warmUpShape(plan: WirePlan): WarmUpShape | undefined;
  /** Runs one task and sends its result through ctx.channel; a throw is logged by the client. */
  run(task: T, ctx: TaskContext): Promise<void>;
}
