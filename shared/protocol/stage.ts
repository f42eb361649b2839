// Runtime validators of the pipeline-stage messages (types in stage-messages.ts, docs/protocol.md
// "Pipeline stages"). Workers check what the coordinator sends (stage, hop); the coordinator checks
// every `stageOut` (shape and length of each field against B*T*C or the stage's parameter count,
// finite numbers: activations are decoded here and scanned). A bad message gets a named rejection
// code and changes nothing.

import { isAppError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { buildStageTable, type StageSpec } from '../model/stage.ts';
import { ACTIVATION_DTYPES, checkPackedActivations, unpackActivations, type ActivationDtype, type PackedActivations } from '../pipeline/activation-codec.ts';
import { Bad, int, num, obj, run, str, typed, type Checked } from './field-checks.ts';
import { MAX_MICROS, type HopMsg, type StageOutMsg, type StageTaskMsg } from './stage-messages.ts';
import { firstNonFinite } from './validate.ts';

export * from './stage-messages.ts';

const MAX_TASK_ID = 64;
const MAX_ROWS = 1 << 16;

/** A packed activation field of [rows, cols], decoded and checked finite. */
export function activationField(o: Record<string, unknown>, k: string, where: string, rows: number, cols: number): { packed: PackedActivations; values: Float32Array } {
  let packed: PackedActivations;
  try {
    packed = checkPackedActivations(o[k], rows, cols);
  } catch (e) {
    if (!isAppError(e)) throw e;
    throw new Bad(/bytes|scales, expected|shape/.test(e.message) ? 'BAD_LENGTH' : /scale of row/.test(e.message) ? 'NON_FINITE' : 'BAD_SCHEMA', `${where}.${k}: ${e.message}`);
  }
  const values = unpackActivations(packed);
  const i = firstNonFinite(values);
  if (i >= 0) throw new Bad('NON_FINITE', `${where}.${k}: value ${i} is ${values[i]}`);
  return { packed, values };
}

function layers(o: Record<string, unknown>, model: ModelConfig, where: string): [number, number] {
  const l = o.layers;
  if (!Array.isArray(l) || l.length !== 2) throw new Bad('BAD_SCHEMA', `${where}.layers: expected [from, to]`);
  const from = int(l as unknown as Record<string, unknown>, '0', `${where}.layers`, 0, model.nLayer - 1);
  const to = int(l as unknown as Record<string, unknown>, '1', `${where}.layers`, from + 1, model.nLayer);
  return [from, to];
}

/** A `stage` message (workers check what the coordinator sends). */
export function validateStageTask(x: unknown, model: ModelConfig): Checked<StageTaskMsg> {
  return run(() => {
    const o = obj(x, 'stage');
    const l = layers(o, model, 'stage');
    const stages = int(o, 'stages', 'stage', 1, model.nLayer);
    const index = int(o, 'index', 'stage', 0, stages - 1);
    if ((index === 0) !== (l[0] === 0) || (index === stages - 1) !== (l[1] === model.nLayer)) {
      throw new Bad('OUT_OF_RANGE', `stage: stage ${index} of ${stages} cannot hold blocks [${l[0]}, ${l[1]})`);
    }
    const dtype = o.dtype as ActivationDtype;
    if (!ACTIVATION_DTYPES.includes(dtype)) throw new Bad('BAD_SCHEMA', `stage.dtype: expected one of ${ACTIVATION_DTYPES.join(', ')}`);
    const total = buildStageTable(model, { from: l[0], to: l[1] }).total;
    let params: Float32Array | undefined;
    if (o.params !== undefined) {
      params = typed(o, 'params', 'stage', Float32Array, total);
      const i = firstNonFinite(params);
      if (i >= 0) throw new Bad('NON_FINITE', `stage.params: value ${i} is ${params[i]}`);
    }
    return {
      taskId: str(o, 'taskId', 'stage', MAX_TASK_ID),
      pipelineId: str(o, 'pipelineId', 'stage', MAX_TASK_ID),
      step: int(o, 'step', 'stage'),
      version: int(o, 'version', 'stage'),
      layers: l,
      index,
      stages,
      micros: int(o, 'micros', 'stage', 1, MAX_MICROS),
      dtype,
      ...(params ? { params } : {}),
      leaseMs: int(o, 'leaseMs', 'stage', 1),
      ...(o.microBatch !== undefined || o.seqLen !== undefined
        ? { microBatch: int(o, 'microBatch', 'stage', 1, MAX_ROWS), seqLen: int(o, 'seqLen', 'stage', 1, model.contextLength) }
        : {}),
      ...(o.dpo !== undefined ? { dpo: flagTrue(o.dpo, 'stage.dpo') } : {}),
    };
  });
}

/** A hop, decoded: the message plus its activations as float32 (checked finite). */
export type CheckedHop = HopMsg & { actsValues?: Float32Array; gradValues?: Float32Array };

/** A `hop` for a worker running blocks `spec` (which fields it needs depends on first / head). */
export function validateHop(x: unknown, model: ModelConfig, spec: StageSpec): Checked<CheckedHop> {
  return run(() => {
    const o = obj(x, 'hop');
    const kind = o.kind;
    if (kind !== 'fwd' && kind !== 'bwd') throw new Bad('BAD_SCHEMA', 'hop.kind: expected "fwd" or "bwd"');
    const first = spec.from === 0;
    const head = spec.to === model.nLayer;
    const B = int(o, 'B', 'hop', 1, MAX_ROWS);
    const T = int(o, 'T', 'hop', 1, model.contextLength);
    const n = B * T;
    const hop: CheckedHop = {
      taskId: str(o, 'taskId', 'hop', MAX_TASK_ID),
      micro: int(o, 'micro', 'hop', 0, MAX_MICROS - 1),
      kind, B, T,
      tokens: int(o, 'tokens', 'hop', 0, n),
    };
    if (kind === 'fwd') {
      if (first) {
        hop.inputs = typed(o, 'inputs', 'hop', Int32Array, n);
        tokenRange(hop.inputs, model.vocabSize, 'hop.inputs');
      } else {
        const a = activationField(o, 'acts', 'hop', n, model.nEmbd);
        hop.acts = a.packed;
        hop.actsValues = a.values;
      }
      if (head) {
        hop.targets = typed(o, 'targets', 'hop', Int32Array, n);
        hop.mask = typed(o, 'mask', 'hop', Uint8Array, n);
        tokenRange(hop.targets, model.vocabSize, 'hop.targets');
        if (o.dpo !== undefined) {
          // --objective dpo: tokens counts the pairs (rows 2i, 2i+1), the rows after them are padding.
          hop.dpo = hopDpo(o.dpo, B);
          const pairs = hop.dpo.refLogProbs.length / 2;
          if (pairs !== hop.tokens) throw new Bad('TOKENS_MISMATCH', `hop: dpo has ${pairs} pairs, tokens says ${hop.tokens}`);
          for (let i = 2 * pairs * T; i < n; i++) if (hop.mask[i]) throw new Bad('OUT_OF_RANGE', `hop.mask[${i}]: row ${Math.floor(i / T)} is past the ${pairs} pairs (padding) and must be masked out`);
        } else {
          let t = 0;
          for (let i = 0; i < n; i++) t += hop.mask[i] ? 1 : 0;
          if (t !== hop.tokens) throw new Bad('TOKENS_MISMATCH', `hop: mask has ${t} positions, tokens says ${hop.tokens}`);
        }
      }
    } else {
      if (head) throw new Bad('BAD_SCHEMA', 'hop: the head stage takes no "bwd" hop (it runs forward+backward on "fwd")');
      const g = activationField(o, 'grad', 'hop', n, model.nEmbd);
      hop.grad = g.packed;
      hop.gradValues = g.values;
    }
    return hop;
  });
}

function flagTrue(v: unknown, where: string): true {
  if (v !== true) throw new Bad('BAD_SCHEMA', `${where}: expected true or absent`);
  return true;
}

/** hop.dpo: beta > 0 and the pair rows' reference log-probs (2 per pair, at most B rows, finite, <= 0). */
function hopDpo(x: unknown, B: number): { beta: number; refLogProbs: Float32Array } {
  const d = obj(x, 'hop.dpo');
  const beta = num(d, 'beta', 'hop.dpo', 0, 1e6);
  if (!(beta > 0)) throw new Bad('OUT_OF_RANGE', 'hop.dpo.beta: must be > 0');
  const refLogProbs = typed(d, 'refLogProbs', 'hop.dpo', Float32Array);
  const len = refLogProbs.length;
  if (len < 2 || len % 2 !== 0 || len > B) throw new Bad('BAD_LENGTH', `hop.dpo.refLogProbs: ${len} values, expected 2 per pair and at most B = ${B}`);
  for (let i = 0; i < refLogProbs.length; i++) {
    if (!Number.isFinite(refLogProbs[i]) || refLogProbs[i] > 1e-3) throw new Bad('OUT_OF_RANGE', `hop.dpo.refLogProbs[${i}] = ${refLogProbs[i]} is not a log-probability`);
  }
  return { beta, refLogProbs };
}

function tokenRange(a: Int32Array, V: number, where: string): void {
  for (let i = 0; i < a.length; i++) if (a[i] < 0 || a[i] >= V) throw new Bad('OUT_OF_RANGE', `${where}[${i}] = ${a[i]} outside [0, ${V})`);
}

/** The routing fields of a `stageOut` (which share, which micro-batch), before the full check. */
export function stageOutHeader(x: unknown): Checked<{ kind: StageOutMsg['kind']; taskId: string; micro: number }> {
  return run(() => {
    const o = obj(x, 'stageOut');
    const kind = o.kind;
    if (kind !== 'fwd' && kind !== 'bwd' && kind !== 'grad') throw new Bad('BAD_SCHEMA', 'stageOut.kind: expected "fwd", "bwd" or "grad"');
    return { kind, taskId: str(o, 'taskId', 'stageOut', MAX_TASK_ID), micro: kind === 'grad' ? -1 : int(o, 'micro', 'stageOut', 0, MAX_MICROS - 1) };
  });
}

/** What the coordinator expects from one stage for one micro-batch (or the share's gradient). */
export interface StageOutShape {
  /** B*T of the micro-batch (activation rows). */
  rows: number;
  cols: number;
  /** The stage's parameter count (grad length). */
  stageParams: number;
  first: boolean;
  head: boolean;
}

/** A decoded `stageOut`, with its activations as float32 (checked finite). */
export type CheckedStageOut = StageOutMsg & { values?: Float32Array };

/** A `stageOut` from a stage worker, checked against the shape its share and stage expect. */
export function validateStageOut(x: unknown, s: StageOutShape): Checked<CheckedStageOut> {
  return run(() => {
    const o = obj(x, 'stageOut');
    const taskId = str(o, 'taskId', 'stageOut', MAX_TASK_ID);
    switch (o.kind) {
      case 'fwd': {
        if (s.head) throw new Bad('BAD_SCHEMA', 'stageOut: the head stage sends "bwd" (loss, dIn), not "fwd"');
        const a = activationField(o, 'acts', 'stageOut', s.rows, s.cols);
        return { kind: 'fwd', taskId, micro: int(o, 'micro', 'stageOut', 0, MAX_MICROS - 1), acts: a.packed, ms: num(o, 'ms', 'stageOut', 0, 1e9), values: a.values };
      }
      case 'bwd': {
        const out: CheckedStageOut = { kind: 'bwd', taskId, micro: int(o, 'micro', 'stageOut', 0, MAX_MICROS - 1), ms: num(o, 'ms', 'stageOut', 0, 1e9) };
        if (!s.first) {
          const a = activationField(o, 'dIn', 'stageOut', s.rows, s.cols);
          out.dIn = a.packed;
          out.values = a.values;
        } else if (o.dIn !== undefined) throw new Bad('BAD_SCHEMA', 'stageOut.dIn: the first stage has no input activations');
        if (s.head) {
          out.loss = num(o, 'loss', 'stageOut', 0, 1e4);
          out.tokens = int(o, 'tokens', 'stageOut', 0, s.rows);
        }
        return out;
      }
      case 'grad': {
        const grads = typed(o, 'grads', 'stageOut', Float32Array, s.stageParams);
        const i = firstNonFinite(grads);
        if (i >= 0) throw new Bad('NON_FINITE', `stageOut.grads: value ${i} is ${grads[i]}`);
        return {
          kind: 'grad', taskId, version: int(o, 'version', 'stageOut'), tokens: int(o, 'tokens', 'stageOut', 0, 2 ** 31),
          grads, nonFinite: int(o, 'nonFinite', 'stageOut', 0, 0),
        };
      }
      default:
        throw new Bad('BAD_SCHEMA', 'stageOut.kind: expected "fwd", "bwd" or "grad"');
    }
  });
}
