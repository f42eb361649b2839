// The same GPT-2 as our engine, written with TensorFlow.js ops and differentiated by tf.grads:
// the peer for the full training step. Same architecture (learned token + position embeddings,
// pre-LN blocks, fused QKV, causal MHA, 4x tanh-GELU MLP, final LN, LM head tied to wte), same
// parameter table (Conv1D [in,out] weights), same loss (mean cross-entropy over mask-1 positions).
// It is a benchmark peer and a cross-check, not a training path.

import type * as tfNs from '@tensorflow/tfjs-core';
import { LAYER_NORM_EPS, type ModelConfig } from '../shared/model/config.ts';
import { buildParameterTable, type ParameterTable } from '../shared/model/parameters.ts';
import type { MicroBatch } from '../shared/backend.ts';
import { AppError } from '../shared/errors.ts';

type Tf = typeof tfNs;
type Tensor = tfNs.Tensor;

export interface TfjsStepResult {
  loss: number;
  tokens: number;
  /** Gradient in the parameter table's flat layout. */
  grads: Float32Array;
}

export class TfjsGpt {
  readonly table: ParameterTable;
  /** One tensor per parameter-table entry, in table order. */
  private readonly params: Tensor[];
  private readonly causal: Map<number, Tensor> = new Map();
  private readonly index: Map<string, number>;

  constructor(
    private readonly tf: Tf,
    readonly config: ModelConfig,
    flat: Float32Array,
  ) {
    this.table = buildParameterTable(config);
    this.index = new Map(this.table.tensors.map((t, i) => [t.name, i]));
    if (flat.length !== this.table.total) {
      throw new AppError('ERR_PARAM_SIZE', `tfjs-gpt: parameter vector has ${flat.length} floats, table needs ${this.table.total}`);
    }
    this.params = this.table.tensors.map((t) => tf.tensor(flat.subarray(t.offset, t.offset + t.size), t.shape, 'float32'));
  }

  private p(name: string): Tensor {
    const t = this.table.byName.get(name);
    if (!t) throw new Error(`tfjs-gpt: no parameter ${name}`);
    return this.paramArgs![this.index.get(name)!];
  }

  /** The tensors the loss closure sees (tf.grads passes its own handles). */
  private paramArgs: Tensor[] | null = null;

  /** [T,T] additive mask: 0 on and below the diagonal, -1e9 above (exp underflows to exactly 0). */
  private causalMask(T: number): Tensor {
    let m = this.causal.get(T);
    if (!m) {
      const data = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) data[i * T + j] = -1e9;
      m = this.tf.keep(this.tf.tensor(data, [T, T])); // cached across tidy scopes
      this.causal.set(T, m);
    }
    return m;
  }

  private layerNorm(x: Tensor, w: Tensor, b: Tensor): Tensor {
    const tf = this.tf;
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LAYER_NORM_EPS))), w), b);
  }

  private gelu(x: Tensor): Tensor {
    const tf = this.tf;
    const c = Math.sqrt(2 / Math.PI);
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), c);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  }

  /** Mean masked cross-entropy as a scalar tensor (inside a tf.grads closure). */
  private lossTensor(inputs: Tensor, targets: Tensor, mask: Tensor, tokens: number, B: number, T: number): Tensor {
    const tf = this.tf;
    const { nLayer: L, nHead: NH, nEmbd: C, vocabSize: V } = this.config;
    const hs = C / NH;
    const wte = this.p('transformer.wte.weight');
    const wpe = tf.slice(this.p('transformer.wpe.weight'), [0, 0], [T, C]);
    let x = tf.reshape(tf.add(tf.reshape(tf.gather(wte, inputs), [B, T, C]), wpe), [B * T, C]);
    const heads = (t: Tensor) => tf.reshape(tf.transpose(tf.reshape(t, [B, T, NH, hs]), [0, 2, 1, 3]), [B * NH, T, hs]);
    for (let l = 0; l < L; l++) {
      const q = (s: string) => this.p(`transformer.h.${l}.${s}`);
      const h1 = this.layerNorm(x, q('ln_1.weight'), q('ln_1.bias'));
      const qkv = tf.add(tf.matMul(h1, q('attn.c_attn.weight')), q('attn.c_attn.bias'));
      const [qq, kk, vv] = tf.split(qkv, 3, 1);
      const att = tf.softmax(tf.add(tf.mul(tf.matMul(heads(qq), heads(kk), false, true), 1 / Math.sqrt(hs)), this.causalMask(T)));
      const y = tf.reshape(tf.transpose(tf.reshape(tf.matMul(att, heads(vv)), [B, NH, T, hs]), [0, 2, 1, 3]), [B * T, C]);
      x = tf.add(x, tf.add(tf.matMul(y, q('attn.c_proj.weight')), q('attn.c_proj.bias')));
      const h2 = this.layerNorm(x, q('ln_2.weight'), q('ln_2.bias'));
      const f = this.gelu(tf.add(tf.matMul(h2, q('mlp.c_fc.weight')), q('mlp.c_fc.bias')));
      x = tf.add(x, tf.add(tf.matMul(f, q('mlp.c_proj.weight')), q('mlp.c_proj.bias')));
    }
    const hf = this.layerNorm(x, this.p('transformer.ln_f.weight'), this.p('transformer.ln_f.bias'));
    const logits = tf.matMul(hf, wte, false, true); // [BT, V], tied head
    const logp = tf.logSoftmax(logits);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(targets, V, 1, 0, 'float32')), -1);
    return tf.div(tf.neg(tf.sum(tf.mul(picked, mask))), Math.max(1, tokens));
  }

  private batchTensors(batch: MicroBatch): { inputs: Tensor; targets: Tensor; mask: Tensor; tokens: number } {
    const tf = this.tf;
    const n = batch.B * batch.T;
    let tokens = 0;
    const m = new Float32Array(n);
    for (let i = 0; i < n; i++) tokens += m[i] = batch.mask[i] ? 1 : 0;
    return {
      inputs: tf.tensor1d(batch.inputs.subarray(0, n), 'int32'),
      targets: tf.tensor1d(batch.targets.subarray(0, n), 'int32'),
      mask: tf.tensor1d(m, 'float32'),
      tokens,
    };
  }

  /**
   * Queues one forward+backward on the GPU; returns the loss and gradient tensors (caller
   * disposes). No read-back: the benchmark decides when to synchronise.
   */
  enqueueStep(batch: MicroBatch): { loss: Tensor; grads: Tensor[]; tokens: number } {
    const tf = this.tf;
    const bt = this.batchTensors(batch);
    try {
      const f = (...ps: Tensor[]) => {
        this.paramArgs = ps;
        return this.lossTensor(bt.inputs, bt.targets, bt.mask, bt.tokens, batch.B, batch.T);
      };
      const { value, grads } = tf.valueAndGrads(f)(this.params);
      return { loss: value, grads, tokens: bt.tokens };
    } finally {
      this.paramArgs = null;
      bt.inputs.dispose();
      bt.targets.dispose();
      bt.mask.dispose();
    }
  }

  /** One step read back in full (loss and the flat gradient), as a worker would send it. */
  async step(batch: MicroBatch): Promise<TfjsStepResult> {
    const tf = this.tf;
    const { loss, grads, tokens } = this.enqueueStep(batch);
    const flatT = tf.tidy(() => tf.concat(grads.map((g) => tf.reshape(g, [-1]))));
    const [lossV, flat] = await Promise.all([loss.data(), flatT.data()]);
    tf.dispose([loss, flatT, ...grads]);
    return { loss: lossV[0], tokens, grads: flat as Float32Array };
  }

  /** Forward only: the loss (for cross-checks). */
  async loss(batch: MicroBatch): Promise<number> {
    const bt = this.batchTensors(batch);
    this.paramArgs = this.params;
    try {
      const l = this.tf.tidy(() => this.lossTensor(bt.inputs, bt.targets, bt.mask, bt.tokens, batch.B, batch.T));
      const v = (await l.data())[0];
      l.dispose();
      return v;
    } finally {
      this.paramArgs = null;
      this.tf.dispose([bt.inputs, bt.targets, bt.mask]);
    }
  }

  dispose(): void {
    this.tf.dispose(this.params);
    this.tf.dispose([...this.causal.values()]);
    this.causal.clear();
  }
}
