// A worker plan (shared/memory/plan.ts) as sent on the wire (welcome) and by GET /api/plan:
// plain fields only, the breakdown copied. A leaf, so the HTTP layer needs nothing of the gateway.

import type { WorkerPlan } from '../../shared/memory/plan.ts';
import type { WirePlan } from '../../shared/protocol/messages.ts';

export function toWirePlan(p: WorkerPlan): WirePlan {
  return {
    role: p.role,
    budgetBytes: p.budgetBytes,
    trainableParams: p.trainableParams,
    microBatch: p.microBatch,
    seqLen: p.seqLen,
    ...(p.layerRange ? { layerRange: p.layerRange } : {}),
    reason: p.reason,
    breakdown: { ...p.breakdown },
  };
}
