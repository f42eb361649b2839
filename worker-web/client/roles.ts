// The roles this worker can take, one task handler each, with the fault wrappers applied to their
// seams. A new role (a pipeline stage, a round of local AdamW steps) is one more handler here,
// with its own compute step; the connection protocol routes its event to it and needs no change.

import { computeTask } from './compute-step.ts';
import type { FaultWrappers } from './fault-wrappers.ts';
import { ReplicaHandler } from './replica-handler.ts';
import { honestDeltaSender, RoundHandler, RoundState, UpdateHandler } from './round-handler.ts';
import { honestSender } from './sender.ts';
import { HopHandler, StageState, StageTaskHandler } from './stage-handler.ts';
import type { TaskHandler } from './task-handler.ts';

export function roleHandlers(faults: FaultWrappers): TaskHandler[] {
  const round = new RoundState();
  const stage = new StageState();
  return [
    new ReplicaHandler({
      compute: faults.compute(computeTask),
      send: faults.sender(honestSender),
      taskView: (t) => faults.taskView(t),
    }),
    // --mode diloco: rounds first (its warm-up shape), then the weight updates between them.
    new RoundHandler({ send: faults.deltaSender(honestDeltaSender), state: round }),
    new UpdateHandler(round),
    // Pipeline stages: a share of the step for this stage, then one hop per micro-batch.
    new StageTaskHandler(stage),
    new HopHandler(stage, (g, version) => faults.stageGrads(g, version), faults.stageHopDelayMs),
  ];
}
