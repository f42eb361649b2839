// The aggregator of a run, from the config: the streaming mean (in the event loop, or on fold
// threads with --fold-threads: fold-threads.ts) or a robust rule (aggregate.ts). Apart from
// aggregate.ts so that fold-threads.ts can import aggregate.ts without a cycle.

import { createRobustAggregator, MeanAggregator, type Aggregator, type RobustOptions } from './aggregate.ts';
import { ThreadedMeanAggregator } from './fold-threads.ts';

export function createAggregator(kind: string, paramCount: number, robust: Partial<RobustOptions> = {}, foldThreads = 0): Aggregator {
  switch (kind) {
    case 'mean':
      return foldThreads > 0 ? new ThreadedMeanAggregator(paramCount, foldThreads) : new MeanAggregator(paramCount);
    case 'trimmed-mean':
    case 'centered-clip':
      return createRobustAggregator(kind, paramCount, robust);
    default:
      throw new Error(`aggregate: unknown aggregator "${kind}" (config validation should have caught it)`);
  }
}
