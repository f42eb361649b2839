// The JSON files of a Hugging Face GPT-2 directory, for our models.
//
// tokenizer.json: our ids 0..255 are RAW BYTES (not GPT-2's BPE). It is expressed in the
// `tokenizers` format as a ByteLevel pre-tokenizer (GPT-2's byte -> printable-unicode map) plus
// a BPE model with NO merges whose vocabulary maps the unicode stand-in of byte b to id b, so every
// byte is its own token and the ids equal ours; `<|endoftext|>` is the added special token 256.

import { AppError } from '../../shared/errors.ts';
import { LAYER_NORM_EPS, validateModelConfig, type ModelConfig } from '../../shared/model/config.ts';
import { EOS_ID, EOS_TEXT, VOCAB_SIZE } from '../../shared/tokenizer.ts';

export const EXPORT_FORMAT = 'webgpu-volunteer-train/export';
export const EXPORT_VERSION = 1;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards. */
export function bytesToUnicode(): string[] {
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return out;
}

export function configJson(config: ModelConfig, dtype: 'float32' | 'float16', step: number): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.contextLength,
    n_ctx: config.contextLength,
    n_embd: config.nEmbd,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: LAYER_NORM_EPS,
    resid_pdrop: 0.0,
    embd_pdrop: 0.0,
    attn_pdrop: 0.0,
    initializer_range: 0.02,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    bos_token_id: EOS_ID,
    eos_token_id: EOS_ID,
    use_cache: true,
    torch_dtype: dtype,
    // Our own magic/version block; transformers keeps unknown keys as attributes.
    webgpu_volunteer_train: { format: EXPORT_FORMAT, version: EXPORT_VERSION, step, tokenizer: 'byte-level-257' },
  };
}

/** Parse a config.json written by us (or any GPT-2 config with our architecture). */
export function parseConfigJson(j: unknown, file: string): { config: ModelConfig; step: number } {
  const bad = (msg: string) => new AppError('ERR_IMPORT_CONFIG', `import ${file}: ${msg}`, 400,
    'import reads directories written by `npm run export` (a GPT-2 config.json)');
  if (typeof j !== 'object' || j === null) throw bad('not a JSON object');
  const o = j as Record<string, unknown>;
  if (o.model_type !== 'gpt2') throw bad(`model_type must be "gpt2", got ${JSON.stringify(o.model_type)}`);
  if (o.activation_function !== undefined && o.activation_function !== 'gelu_new') {
    throw bad(`activation_function must be "gelu_new" (tanh GELU), got ${JSON.stringify(o.activation_function)}`);
  }
  if (o.tie_word_embeddings === false) throw bad('tie_word_embeddings must be true (our LM head is the token embedding)');
  if (o.n_inner !== undefined && o.n_inner !== null && o.n_inner !== 4 * Number(o.n_embd)) throw bad(`n_inner must be null or 4*n_embd, got ${String(o.n_inner)}`);
  const eps = o.layer_norm_epsilon ?? LAYER_NORM_EPS;
  if (eps !== LAYER_NORM_EPS) throw bad(`layer_norm_epsilon must be ${LAYER_NORM_EPS}, got ${String(eps)}`);
  const num = (k: string) => {
    const v = o[k];
    if (!Number.isInteger(v) || (v as number) <= 0) throw bad(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const config: ModelConfig = {
    vocabSize: num('vocab_size'),
    contextLength: num('n_positions'),
    nLayer: num('n_layer'),
    nHead: num('n_head'),
    nEmbd: num('n_embd'),
  };
  try {
    validateModelConfig(config);
  } catch (e) {
    throw bad((e as Error).message);
  }
  const meta = o.webgpu_volunteer_train as { step?: unknown } | undefined;
  const step = meta && Number.isInteger(meta.step) ? (meta.step as number) : 0;
  return { config, step };
}

export function tokenizerJson(): Record<string, unknown> {
  const b2u = bytesToUnicode();
  const vocab: Record<string, number> = {};
  b2u.forEach((ch, b) => (vocab[ch] = b));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: EOS_ID, content: EOS_TEXT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

export function tokenizerConfigJson(contextLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    model_max_length: contextLength,
    bos_token: EOS_TEXT,
    eos_token: EOS_TEXT,
    unk_token: null,
    pad_token: null,
    add_prefix_space: false,
    clean_up_tokenization_spaces: false,
  };
}

export function generationConfigJson(contextLength: number): Record<string, unknown> {
  return { bos_token_id: EOS_ID, eos_token_id: EOS_ID, max_length: contextLength, do_sample: false };
}

export const TOKENIZER_VOCAB_SIZE = VOCAB_SIZE;
