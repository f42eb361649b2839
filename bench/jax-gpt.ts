// The same GPT-2 as tfjs-gpt.ts, in @jax-js/jax: forward written with jax.numpy, differentiated
// by valueAndGrad and compiled with jit, flat gradient concatenated on the device. jax-js arrays
// follow move semantics (an op consumes its inputs), so every array used more than once is
// passed as .ref except at its last use.

import { LAYER_NORM_EPS, type ModelConfig } from '../shared/model/config.ts';
import { buildParameterTable, type ParameterTable } from '../shared/model/parameters.ts';
import type { MicroBatch } from '../shared/backend.ts';

type Jax = typeof import('@jax-js/jax');
type JArray = InstanceType<Jax['Array']>;

export class JaxGpt {
  readonly table: ParameterTable;
  private readonly params: JArray[];
  private readonly index: Map<string, number>;
  private readonly stepFn: (params: JArray[], inputs: JArray, targets: JArray, mask: JArray) => [JArray, JArray];

  constructor(
    private readonly jax: Jax,
    readonly config: ModelConfig,
    flat: Float32Array,
    private readonly B: number,
    private readonly T: number,
  ) {
    const np = jax.numpy;
    this.table = buildParameterTable(config);
    this.index = new Map(this.table.tensors.map((t, i) => [t.name, i]));
    this.params = this.table.tensors.map((t) => np.array(flat.slice(t.offset, t.offset + t.size)).reshape(t.shape));
    const loss = (ps: JArray[], inputs: JArray, targets: JArray, mask: JArray) => this.loss(ps, inputs, targets, mask);
    const vg = jax.valueAndGrad(loss);
    this.stepFn = jax.jit((ps: JArray[], inputs: JArray, targets: JArray, mask: JArray) => {
      const [v, g] = vg(ps, inputs, targets, mask) as unknown as [JArray, JArray[]];
      return [v, np.concatenate(g.map((x) => np.ravel(x)))];
    }) as unknown as typeof this.stepFn;
  }

  /** Mean masked cross-entropy; consumes ps, inputs, targets, mask (mask is pre-divided by tokens). */
  private loss(ps: JArray[], inputs: JArray, targets: JArray, mask: JArray): JArray {
    const { jax, B, T } = this;
    const np = jax.numpy;
    const nn = jax.nn;
    const { nLayer: L, nHead: NH, nEmbd: C, vocabSize: V } = this.config;
    const hs = C / NH;
    const p = (name: string) => ps[this.index.get(name)!];
    const ln = (x: JArray, w: JArray, b: JArray) => {
      const mean = np.mean(x.ref, -1, { keepdims: true });
      const xc = np.subtract(x, mean);
      const v = np.mean(np.square(xc.ref), -1, { keepdims: true });
      return np.add(np.multiply(np.multiply(xc, np.reciprocal(np.sqrt(np.add(v, LAYER_NORM_EPS)))), w), b);
    };
    const gelu = (x: JArray) => {
      const inner = np.multiply(np.add(x.ref, np.multiply(np.power(x.ref, 3), 0.044715)), Math.sqrt(2 / Math.PI));
      return np.multiply(np.multiply(x, 0.5), np.add(np.tanh(inner), 1));
    };
    const heads = (t: JArray) => np.reshape(np.transpose(np.reshape(t, [B, T, NH, hs]), [0, 2, 1, 3]), [B * NH, T, hs]);
    const causal = np.tril(np.ones([T, T])); // 1 on and below the diagonal
    const wte = p('transformer.wte.weight');
    const wpe = np.reshape(p('transformer.wpe.weight').slice([0, T], []), [1, T, C]);
    // Embedding as one-hot x wte: the gradient of take (a scatter) does not jit-compile in
    // jax-js 0.1.25 ("routine primitive scatter input is not imm"). Costs 2*BT*V*C extra FLOPs
    // forward and as many backward; noted in docs/benchmarks.md.
    const emb = np.matmul(nn.oneHot(inputs, V), wte.ref);
    let x = np.reshape(np.add(np.reshape(emb, [B, T, C]), wpe), [B * T, C]);
    for (let l = 0; l < L; l++) {
      const q = (s: string) => p(`transformer.h.${l}.${s}`);
      const h1 = ln(x.ref, q('ln_1.weight'), q('ln_1.bias'));
      const qkv = np.add(np.matmul(h1, q('attn.c_attn.weight')), q('attn.c_attn.bias'));
      const [qq, kk, vv] = np.split(qkv, 3, 1);
      const scores = np.multiply(np.matmul(heads(qq), np.transpose(heads(kk), [0, 2, 1])), 1 / Math.sqrt(hs));
      const att = nn.softmax(np.where(np.greater(causal.ref, 0), scores, -1e9), -1);
      const y = np.reshape(np.transpose(np.reshape(np.matmul(att, heads(vv)), [B, NH, T, hs]), [0, 2, 1, 3]), [B * T, C]);
      x = np.add(x, np.add(np.matmul(y, q('attn.c_proj.weight')), q('attn.c_proj.bias')));
      const h2 = ln(x.ref, q('ln_2.weight'), q('ln_2.bias'));
      const f = gelu(np.add(np.matmul(h2, q('mlp.c_fc.weight')), q('mlp.c_fc.bias')));
      x = np.add(x, np.add(np.matmul(f, q('mlp.c_proj.weight')), q('mlp.c_proj.bias')));
    }
    causal.dispose();
    const hf = ln(x, p('transformer.ln_f.weight'), p('transformer.ln_f.bias'));
    const logits = np.matmul(hf, np.transpose(wte)); // tied head
    const logp = nn.logSoftmax(logits, -1);
    const picked = np.sum(np.multiply(logp, nn.oneHot(targets, V)), -1);
    return np.negative(np.sum(np.multiply(picked, mask)));
  }

  /** One forward+backward with loss and the flat gradient read back. */
  async step(batch: MicroBatch): Promise<{ loss: number; tokens: number; grads: Float32Array }> {
    const np = this.jax.numpy;
    if (batch.B !== this.B || batch.T !== this.T) throw new Error(`jax-gpt: built for B=${this.B} T=${this.T}, got ${batch.B}x${batch.T}`);
    const n = batch.B * batch.T;
    let tokens = 0;
    for (let i = 0; i < n; i++) tokens += batch.mask[i] ? 1 : 0;
    const m = new Float32Array(n);
    for (let i = 0; i < n; i++) m[i] = batch.mask[i] ? 1 / Math.max(1, tokens) : 0;
    const [v, g] = this.stepFn(
      this.params.map((x) => x.ref),
      np.array(batch.inputs.slice(0, n), { dtype: np.int32 }),
      np.array(batch.targets.slice(0, n), { dtype: np.int32 }),
      np.array(m),
    );
    const [lv, gv] = await Promise.all([v.data(), g.data()]);
    return { loss: lv[0] as number, tokens, grads: gv as Float32Array };
  }

  dispose(): void {
    for (const x of this.params) x.dispose();
    (this.stepFn as unknown as { dispose?: () => void }).dispose?.();
  }
}
