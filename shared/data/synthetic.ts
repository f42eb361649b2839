// Self-describing synthetic data for tests: sample `id`'s tokens encode the id itself, so any
// consumer (worker, trainer, test) can tell from a row which sample it is.
// Token stream of sample id: [id & 255, (id >> 8) & 255, (id >> 16) & 255, then (id + k) & 255
// for k = 3, 4, ...], of length 4 + (id mod (T - 3)) tokens (rows of different lengths exercise
// padding); the row is that stream as inputs/targets, mask 1 on its positions, padding after.

import { AppError } from '../errors.ts';
import { checkSampleId, fnv1a, textRow } from './sequences.ts';
import type { Dataset, SequenceSample } from './types.ts';

export const SYNTHETIC_MAX_SIZE = 1 << 24;

export function syntheticTokens(id: number, T: number): number[] {
  const n = 4 + (id % (T - 3));
  const out = [id & 255, (id >> 8) & 255, (id >> 16) & 255];
  for (let k = 3; k < n; k++) out.push((id + k) & 255);
  return out;
}

export function syntheticRow(id: number, T: number): SequenceSample {
  return textRow(syntheticTokens(id, T), T);
}

/** The sample id a syntheticRow (or a MicroBatch row copied from one) came from. */
export function syntheticId(inputs: ArrayLike<number>): number {
  return inputs[0] | (inputs[1] << 8) | (inputs[2] << 16);
}

/** `size` train samples (ids 0..size-1) and `heldOut` more (ids size..size+heldOut-1 encoded). */
export function syntheticDataset(size: number, T: number, heldOut = 0): Dataset {
  if (!(Number.isInteger(size) && size > 0 && size + heldOut <= SYNTHETIC_MAX_SIZE && Number.isInteger(T) && T >= 4)) {
    throw new AppError('ERR_DATA_OPTIONS', `synthetic dataset: need 0 < size + heldOut <= ${SYNTHETIC_MAX_SIZE} and T >= 4, got size ${size}, heldOut ${heldOut}, T ${T}`);
  }
  const name = `synthetic(${size})`;
  return {
    name,
    kind: 'text',
    T,
    size,
    fingerprint: fnv1a([name, String(T), String(heldOut)]),
    sample(id) {
      checkSampleId(id, size, name);
      return syntheticRow(id, T);
    },
    heldOut: {
      size: heldOut,
      sample(id) {
        checkSampleId(id, heldOut, `${name} held-out`);
        return syntheticRow(size + id, T);
      },
    },
  };
}
