// The coordinator's ONE typed config: defaults < --config FILE (JSON) < env (PORT, ADMIN_TOKEN)
// < command-line flags. One table (OPTIONS) states each option once: its flag, value type, zod
// schema with its default, and help; the help text (USAGE), flag parsing and validation derive from
// it. An unknown or invalid option is an AppError (ERR_CONFIG) naming the option and what is
// allowed. Defaults are documented in docs/operations.md too.

import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AppError } from '../shared/errors.ts';
import { ARITH_REV_ANSWER_FORMATS } from '../shared/data/arith-rev.ts';
import { PRESET_NAMES } from '../shared/model/config.ts';

const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.number({ error: `${name} must be a number` }).int(`${name} must be an integer`).min(min, `${name} must be >= ${min}`).max(max, `${name} must be <= ${max}`);
const pos = (name: string) =>
  z.number({ error: `${name} must be a number` }).refine((v) => Number.isFinite(v) && v > 0, `${name} must be a positive number`);
const nonneg = (name: string) =>
  z.number({ error: `${name} must be a number` }).refine((v) => Number.isFinite(v) && v >= 0, `${name} must be >= 0`);

export const AGGREGATORS = ['mean', 'trimmed-mean', 'centered-clip'] as const;
export const VERIFY_FAIL = ['closed', 'open'] as const;
export const MODES = ['sync', 'diloco'] as const;
export const COMPRESS = ['none', 'fp16', 'int8', 'sparse'] as const;
export const OBJECTIVES = ['lm', 'dpo'] as const;
export const PIPELINE = ['auto', 'off'] as const;
export const ACTIVATIONS = ['fp32', 'fp16', 'int8'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * One command-line option: `--<flag> <arg>` (the flag is the key in kebab case), how its value is
 * read from the command line, its zod schema WITH its default (`.default(x)`; `.optional()`: none),
 * its help text, and, for an optional one, what happens without it (`unset`).
 */
interface OptionSpec {
  arg: string;
  type: 'int' | 'float' | 'string';
  schema: z.ZodType;
  help: string;
  unset?: string;
}

/**
 * THE option table: help text (USAGE), flag parsing (loadConfig) and validation (configSchema) all
 * derive from it. The default of each option is the `.default(...)` on its line.
 */
const OPTIONS = {
  port: { arg: 'N', type: 'int', schema: int('--port', 0, 65535).default(8080), help: 'listen port; 0 picks a free one (env PORT)' },
  host: { arg: 'H', type: 'string', schema: z.string().min(1, '--host must not be empty').default('0.0.0.0'), help: 'listen address' },
  preset: { arg: 'P', type: 'string', schema: z.enum(PRESET_NAMES as [string, ...string[]], { error: `--preset must be one of: ${PRESET_NAMES.join(', ')}` }).default('small'), help: `model: ${PRESET_NAMES.join(' | ')}` },
  data: { arg: 'FILE', type: 'string', schema: z.string().min(1, '--data must be a file path').optional(), unset: 'built-in arith-rev task',
    help: '.txt or .jsonl training data; with --objective dpo a .jsonl of {prompt, chosen, rejected}\nrows, or `preferences` = the run dir\'s collected preferences.jsonl' },
  answers: { arg: 'F', type: 'string', schema: z.enum(ARITH_REV_ANSWER_FORMATS, { error: `--answers must be one of: ${ARITH_REV_ANSWER_FORMATS.join(', ')}` }).default('padded-reversed'),
    help: 'built-in task: how arithmetic answers are written: plain ("12+34=" -> "46"), padded ("046")\nor padded-reversed ("640": units first, the default; docs/model.md); ignored with --data' },
  objective: { arg: 'O', type: 'string', schema: z.enum(OBJECTIVES, { error: `--objective must be one of: ${OBJECTIVES.join(', ')}` }).default('lm'),
    help: 'lm = next-token loss; dpo = preference tuning on pairs (DPO, docs/dpo.md)' },
  dpoBeta: { arg: 'X', type: 'float', schema: pos('--dpo-beta').default(0.1), help: 'dpo: beta, the strength of the pull toward the reference' },
  reference: { arg: 'R', type: 'string', schema: z.string().min(1, '--reference must be init or a directory').default('init'),
    help: 'dpo: the frozen reference model: init (the starting weights: --init-from, else the\nseeded init) or an exported model directory' },
  seqLen: { arg: 'N', type: 'int', schema: int('--seq-len', 1).optional(), help: 'tokens per training row', unset: '16 for the built-in task, else the context length' },
  runDir: { arg: 'DIR', type: 'string', schema: z.string().min(1, '--run-dir must not be empty').default('./runs/default'), help: 'checkpoints and logs' },
  checkpointEvery: { arg: 'N', type: 'int', schema: int('--checkpoint-every', 0).default(50), help: 'steps between checkpoints; 0 = only on exit/admin' },
  keepCheckpoints: { arg: 'K', type: 'int', schema: int('--keep-checkpoints', 1, 1000).default(3), help: 'newest checkpoints kept' },
  globalBatch: { arg: 'N', type: 'int', schema: int('--global-batch', 1, 1 << 20).default(8), help: 'sequences per optimizer step' },
  maxSteps: { arg: 'N', type: 'int', schema: int('--max-steps', 0).default(0), help: 'stop training after N steps; 0 = no limit' },
  seed: { arg: 'N', type: 'int', schema: int('--seed', 0, 2 ** 32 - 1).default(1), help: 'init, data order' },
  lr: { arg: 'X', type: 'float', schema: pos('--lr').default(1e-3), help: 'peak learning rate' },
  minLr: { arg: 'X', type: 'float', schema: nonneg('--min-lr').default(1e-5), help: 'final learning rate of the schedule' },
  warmupSteps: { arg: 'N', type: 'int', schema: int('--warmup-steps', 0).default(200), help: 'linear warm-up steps' },
  decaySteps: { arg: 'N', type: 'int', schema: int('--decay-steps', 0).default(6000), help: 'schedule length (warmup, peak, decay), then min-lr; 0 = max-steps or 10000' },
  stableFraction: { arg: 'X', type: 'float', schema: z.number().min(0, '--stable-fraction must be in [0, 1]').max(1, '--stable-fraction must be in [0, 1]').default(0.8),
    help: 'warmup-stable-decay: hold the peak lr for this fraction of --decay-steps, then linear to min-lr; 0 = cosine' },
  weightDecay: { arg: 'X', type: 'float', schema: nonneg('--weight-decay').default(0.01), help: 'AdamW decoupled weight decay' },
  beta1: { arg: 'X', type: 'float', schema: z.number().min(0, '--beta1 must be in [0, 1)').lt(1, '--beta1 must be in [0, 1)').default(0.9), help: 'AdamW first moment decay' },
  beta2: { arg: 'X', type: 'float', schema: z.number().min(0, '--beta2 must be in [0, 1)').lt(1, '--beta2 must be in [0, 1)').default(0.99), help: 'AdamW second moment decay' },
  eps: { arg: 'X', type: 'float', schema: pos('--eps').default(1e-8), help: 'AdamW epsilon' },
  gradClip: { arg: 'X', type: 'float', schema: nonneg('--grad-clip').default(1.0), help: 'global-norm clip; 0 = off' },
  mode: { arg: 'M', type: 'string', schema: z.enum(MODES, { error: `--mode must be one of: ${MODES.join(', ')}` }).default('sync'),
    help: 'sync = one optimizer step per global batch; diloco = rounds of H local AdamW steps per\nworker, then one outer Nesterov step on their compressed deltas (docs/diloco.md)' },
  innerSteps: { arg: 'H', type: 'int', schema: int('--inner-steps', 1, 10_000).default(50), help: 'diloco: inner AdamW steps per round (slow workers get fewer)' },
  outerLr: { arg: 'X', type: 'float', schema: pos('--outer-lr').optional(), unset: '0.7; 1 with --compress sparse', help: 'diloco: outer SGD learning rate' },
  outerMomentum: { arg: 'X', type: 'float', schema: z.number({ error: '--outer-momentum must be a number' }).min(0, '--outer-momentum must be in [0, 1)').lt(1, '--outer-momentum must be in [0, 1)').optional(), unset: '0.9; 0 with --compress sparse',
    help: 'diloco: outer Nesterov momentum (sparse: must be 0, the workers\' error feedback stands in for it)' },
  outerMomentumEnd: { arg: 'X', type: 'float', schema: z.number({ error: '--outer-momentum-end must be a number' }).min(0, '--outer-momentum-end must be in [0, 1)').lt(1, '--outer-momentum-end must be in [0, 1)').default(0),
    help: 'diloco: outer momentum of the last round: it goes linearly from --outer-momentum at round 0\nto X at the schedule\'s last round (--decay-steps, else --max-steps, else 10,000 rounds);\n0 lands the run (measured: docs/diloco.md); X = --outer-momentum keeps it constant' },
  outerLrEnd: { arg: 'X', type: 'float', schema: nonneg('--outer-lr-end').optional(), unset: 'constant --outer-lr',
    help: 'diloco: outer learning rate of the last round, linearly from --outer-lr (as --outer-momentum-end)' },
  compress: { arg: 'C', type: 'string', schema: z.enum(COMPRESS, { error: `--compress must be one of: ${COMPRESS.join(', ')}` }).optional(), unset: 'int8 in diloco, none in sync',
    help: 'diloco: how deltas are packed (int8 = blockwise absmax; sparse = top-k + 2-bit values\nwith error feedback); sync: none or fp16 (gradients sent as IEEE binary16)' },
  sparseTopk: { arg: 'K', type: 'int', schema: int('--sparse-topk', 1, 4096).default(64), help: 'diloco --compress sparse: values kept of every 4096 (64 = 1.56%, SparseLoCo)' },
  roundWarmup: { arg: 'H1,H2,..', type: 'string', schema: z.string().regex(/^[1-9]\d{0,4}(,[1-9]\d{0,4})*$/, '--round-warmup must be a comma-separated list of inner-step counts >= 1, e.g. 5,10,10,25').optional(),
    unset: 'every round runs --inner-steps', help: 'diloco: the inner steps of the first rounds (a round-length warm-up; later rounds run\n--inner-steps; --max-steps still counts rounds; docs/diloco.md)' },
  denseRounds: { arg: 'N', type: 'int', schema: int('--dense-rounds', 0).default(0), help: 'diloco --compress sparse: the first N rounds send int8 deltas and publish an\nint8 outer step (a dense warm-up; docs/diloco.md)' },
  quorum: { arg: 'N', type: 'int', schema: int('--quorum', 1).optional(), unset: 'all live workers of the round',
    help: 'diloco: deltas after which a round closes once the grace window has passed' },
  roundGraceMs: { arg: 'N', type: 'int', schema: int('--round-grace-ms', 0).default(5_000), help: 'diloco: wait after the quorum for the rest of the round' },
  pipeline: { arg: 'M', type: 'string', schema: z.enum(PIPELINE, { error: `--pipeline must be one of: ${PIPELINE.join(', ')}` }).default('auto'),
    help: 'auto = workers too small for the whole model train as pipeline stages (docs/pipeline.md);\noff = they wait' },
  activations: { arg: 'D', type: 'string', schema: z.enum(ACTIVATIONS, { error: `--activations must be one of: ${ACTIVATIONS.join(', ')}` }).default('fp16'),
    help: 'wire dtype of the activations relayed between pipeline stages (int8 = per-row absmax)' },
  aggregate: { arg: 'A', type: 'string', schema: z.enum(AGGREGATORS, { error: `--aggregate must be one of: ${AGGREGATORS.join(', ')}` }).default('mean'), help: `${AGGREGATORS.join(' | ')} (docs/hardening.md)` },
  verifyRate: { arg: 'X', type: 'float', schema: z.number({ error: '--verify-rate must be a number' }).min(0, '--verify-rate must be in [0, 1]').max(1, '--verify-rate must be in [0, 1]').default(0.1), help: 'base share of results re-computed on the CPU; 0 = off' },
  verifyTolerance: { arg: 'X', type: 'float', schema: pos('--verify-tolerance').default(0.05), help: 'relative gradient/loss error allowed by re-computation' },
  verifyFail: { arg: 'M', type: 'string', schema: z.enum(VERIFY_FAIL, { error: `--verify-fail must be one of: ${VERIFY_FAIL.join(', ')}` }).default('closed'),
    help: 'a sampled result whose re-computation cannot run: closed = refused (UNVERIFIED) and\nre-leased; open = accepted unverified' },
  maxShare: { arg: 'X', type: 'float', schema: z.number({ error: '--max-share must be a number' }).gt(0, '--max-share must be in (0, 1]').max(1, '--max-share must be in (0, 1]').default(0.25),
    help: "cap on one identity's and one address's share of a step's samples: max(X, 1/n)" },
  foldThreads: { arg: 'N', type: 'string', schema: z.string().regex(/^(auto|[0-9]|[1-5][0-9]|6[0-4])$/, '--fold-threads must be auto or an integer in [0, 64]').default('auto'),
    help: 'worker threads that fold accepted gradients into the step\'s mean, off the main loop;\nauto = 0 under 64 MiB of gradient, else min(4, cores - 1) at least 1 (docs/scale.md)' },
  judgeThreads: { arg: 'N', type: 'string', schema: z.string().regex(/^(auto|[0-9]|[1-5][0-9]|6[0-4])$/, '--judge-threads must be auto or an integer in [0, 64]').default('auto'),
    help: 'diloco: worker threads that score deltas (their loss on their own rows, docs/diloco.md\n"Trust"); 0 = in the event loop; auto = min(8, cores - 1), at least 1' },
  verifyThreads: { arg: 'N', type: 'int', schema: int('--verify-threads', 1, 64).default(1), help: 'worker threads that run the re-computations, off the main loop' },
  normLimit: { arg: 'X', type: 'float', schema: z.number({ error: '--norm-limit must be a number' }).min(1.5, '--norm-limit must be >= 1.5').default(6), help: 'refuse gradients > X x the recent median norm' },
  rateLimit: { arg: 'N', type: 'float', schema: pos('--rate-limit').default(20), help: 'messages per second per worker connection' },
  preferenceRate: { arg: 'N', type: 'float', schema: pos('--preference-rate').default(30), help: 'POST /api/preferences per minute per client address (bursts up to N)' },
  allowedOrigins: { arg: 'L', type: 'string', schema: z.string().max(2000).default(''), help: 'comma-separated extra origins for the socket endpoints', unset: 'same origin only' },
  evalEvery: { arg: 'N', type: 'int', schema: int('--eval-every', 0).default(25), help: 'steps between held-out evaluations; 0 = off' },
  evalSamples: { arg: 'N', type: 'int', schema: int('--eval-samples', 1, 100000).optional(), help: 'held-out rows/pairs per evaluation', unset: 'the whole held-out split (200 pairs) for the built-in task, 32 with --data' },
  leaseMs: { arg: 'N', type: 'int', schema: int('--lease-ms', 100).default(30_000), help: 'a task not returned within N ms is re-leased' },
  heartbeatMs: { arg: 'N', type: 'int', schema: int('--heartbeat-ms', 50).default(2_000), help: 'worker heartbeat interval' },
  deadAfterMs: { arg: 'N', type: 'int', schema: int('--dead-after-ms', 200).default(10_000), help: 'silence after which a worker is dead' },
  maxMicroBatch: { arg: 'N', type: 'int', schema: int('--max-micro-batch', 1).default(64), help: "cap on any worker's task size (sequences); in sync mode plans are also capped at one step's rows (the global batch)" },
  minWorkers: { arg: 'N', type: 'int', schema: int('--min-workers', 1).default(1), help: 'start training once N replica workers joined' },
  adminToken: { arg: 'T', type: 'string', schema: z.string().min(8, '--admin-token must be at least 8 characters').optional(), help: 'bearer token for /api/admin/* (env ADMIN_TOKEN)', unset: 'generated, printed' },
  joinToken: { arg: 'T', type: 'string', schema: z.string().min(1).max(128, '--join-token must be at most 128 characters').optional(), help: 'workers must present it in hello', unset: 'open cluster' },
  initFrom: { arg: 'DIR', type: 'string', schema: z.string().min(1, '--init-from must be a directory path').optional(), unset: 'off',
    help: 'initial weights from an exported model directory (model.safetensors + config.json,\ne.g. from `npm run export`) when the run dir has no checkpoint (or with --no-resume);\nits config.json must match --preset. A checkpoint in the run dir still wins' },
  redis: { arg: 'URL', type: 'string', schema: z.string().regex(/^rediss?:\/\/\S+$/, '--redis must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379').optional(), unset: 'off: one process, embedded',
    help: 'join a run shared by several coordinator processes through Redis (leader election,\nhand-over; docs/scale.md). Every process with the same --redis and --run-name is one run;\nall must share --run-dir (same machine or a shared filesystem) and the training options' },
  runName: { arg: 'NAME', type: 'string', schema: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, '--run-name must be 1-64 characters of A-Z a-z 0-9 . _ -').optional(), unset: "the run dir's name",
    help: 'with --redis: the run this process joins (its keys in Redis)' },
  advertiseUrl: { arg: 'URL', type: 'string', schema: z.string().regex(/^https?:\/\/[^\s/]+$/, '--advertise-url must be http(s)://HOST:PORT without a path').optional(), unset: 'the listen address',
    help: 'with --redis: the address other coordinator processes reach this one at' },
  leaderTtlMs: { arg: 'N', type: 'int', schema: int('--leader-ttl-ms', 1000, 60_000).default(5_000),
    help: 'with --redis: the leader lease; a dead leader is replaced after at most about this long' },
  logLevel: { arg: 'L', type: 'string', schema: z.enum(LOG_LEVELS, { error: `--log-level must be one of: ${LOG_LEVELS.join(', ')}` }).default('info'), help: LOG_LEVELS.join('|') },
} satisfies Record<string, OptionSpec>;

type Options = typeof OPTIONS;
type OptionKey = keyof Options;

/** `seqLen` -> `seq-len`. */
const flagOf = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** A default as the help text shows it: 1e-3, not 0.001. */
function showDefault(v: unknown): string {
  if (typeof v === 'number' && v !== 0 && Math.abs(v) < 1e-2) return v.toExponential();
  return String(v);
}

function usageLine(key: string, o: OptionSpec): string {
  const def = o.schema instanceof z.ZodDefault ? (o.schema.def.defaultValue as unknown) : undefined;
  const tail = o.unset !== undefined ? `(default: ${o.unset})` : `(default ${showDefault(def)})`;
  const [first, ...more] = o.help.split('\n');
  const indent = ' '.repeat(25);
  return [`  ${`--${flagOf(key)} ${o.arg}`.padEnd(22)} ${first}`, ...more.map((l) => indent + l)].join('\n') + `   ${tail}`;
}

export const USAGE = [
  'usage: npm start -- [options]      (or: npx tsx coordinator/main.ts [options])',
  '',
  ...Object.entries(OPTIONS).map(([k, o]) => usageLine(k, o)),
  '  --no-resume            start fresh even if the run dir has checkpoints',
  '  --config FILE          JSON file with any of these options (camelCase keys)',
  '  -h, --help             this text',
].join('\n');

const shape = Object.fromEntries(Object.entries(OPTIONS).map(([k, o]) => [k, o.schema])) as { [K in OptionKey]: Options[K]['schema'] };

export const configSchema = z
  .object({
    ...shape,
    /** --no-resume sets it false. */
    resume: z.boolean().default(true),
  })
  .strict()
  .refine((c) => c.deadAfterMs > c.heartbeatMs, { message: '--dead-after-ms must be larger than --heartbeat-ms', path: ['deadAfterMs'] })
  .refine((c) => c.objective === 'lm' || c.data !== undefined, { message: '--objective dpo needs --data FILE.jsonl of {prompt, chosen, rejected} rows, or --data preferences', path: ['data'] })
  .refine((c) => c.objective === 'lm' || c.mode === 'sync', { message: '--objective dpo runs in --mode sync (diloco rounds train the LM loss only)', path: ['objective'] })
  .refine((c) => c.redis === undefined || (c.mode === 'sync' && c.aggregate === 'mean' && c.objective === 'lm'), { message: '--redis (several coordinators) runs --mode sync, --aggregate mean and --objective lm: gateways pre-aggregate their workers into one token-weighted mean (docs/scale.md)', path: ['redis'] })
  .refine((c) => c.mode === 'diloco' || c.compress === undefined || c.compress === 'none' || c.compress === 'fp16', { message: '--compress in --mode sync: none or fp16 (int8/sparse pack diloco deltas only)', path: ['compress'] })
  // SparseLoCo: the published outer step must stay sparse (workers hold exactly the outer weights);
  // a momentum buffer would make it dense. The workers' error feedback plays the momentum's part.
  .refine((c) => c.roundWarmup === undefined || c.mode === 'diloco', { message: '--round-warmup needs --mode diloco (it sets the inner steps of the first rounds)', path: ['roundWarmup'] })
  .refine((c) => c.denseRounds === 0 || c.compress === 'sparse', { message: '--dense-rounds needs --mode diloco --compress sparse (it is the dense warm-up of a sparse run)', path: ['denseRounds'] })
  .refine((c) => c.compress !== 'sparse' || !c.outerMomentumEnd, { message: '--outer-momentum-end must be 0 with --compress sparse (as --outer-momentum)', path: ['outerMomentumEnd'] })
  .refine((c) => c.compress !== 'sparse' || !c.outerMomentum, { message: '--outer-momentum must be 0 with --compress sparse (the outer step is published exactly as a sparse update; the workers\' error feedback stands in for momentum)', path: ['outerMomentum'] });

/**
 * The outer step's hyper-parameters at round `round` of `rounds` (the schedule's horizon in rounds):
 * --outer-lr / --outer-momentum at round 0, linearly to --outer-lr-end / --outer-momentum-end (when
 * set) at round rounds - 1, held there after.
 */
export function outerHyperAt(c: Pick<CoordinatorConfig, 'compress' | 'outerLr' | 'outerMomentum' | 'outerLrEnd'> & { outerMomentumEnd?: number }, round: number, rounds: number): { lr: number; momentum: number } {
  const h = outerHyper(c);
  const f = rounds > 1 ? Math.min(1, Math.max(0, round / (rounds - 1))) : 1;
  const at = (a: number, z: number | undefined) => (z === undefined ? a : a + (z - a) * f);
  return { lr: at(h.lr, c.outerLrEnd), momentum: at(h.momentum, c.outerMomentumEnd) };
}

/** --round-warmup as numbers (validated by the schema: a list of integers >= 1); [] when unset. */
function warmupLengths(c: Pick<CoordinatorConfig, 'roundWarmup'>): number[] {
  return c.roundWarmup ? c.roundWarmup.split(',').map(Number) : [];
}

/**
 * Inner steps of round `round` (before the slow-worker scaling): the --round-warmup list's entry
 * for the first rounds, then --inner-steps.
 */
export function roundLength(c: Pick<CoordinatorConfig, 'innerSteps' | 'roundWarmup'>, round: number): number {
  const ramp = warmupLengths(c);
  return round < ramp.length ? ramp[round] : c.innerSteps;
}

/** Inner steps of rounds [0, round): where round `round` starts on the inner learning-rate schedule. */
export function roundStart(c: Pick<CoordinatorConfig, 'innerSteps' | 'roundWarmup'>, round: number): number {
  const ramp = warmupLengths(c);
  let s = 0;
  for (let i = 0; i < Math.min(round, ramp.length); i++) s += ramp[i];
  return s + Math.max(0, round - ramp.length) * c.innerSteps;
}

/** The outer step's hyper-parameters: the flags, or the defaults of the codec (docs/diloco.md). */
export function outerHyper(c: Pick<CoordinatorConfig, 'compress' | 'outerLr' | 'outerMomentum'>): { lr: number; momentum: number } {
  const sparse = c.compress === 'sparse';
  return { lr: c.outerLr ?? (sparse ? 1 : 0.7), momentum: c.outerMomentum ?? (sparse ? 0 : 0.9) };
}

/**
 * The micro-batch cap a replica's plan is made with. In sync mode no task is larger than one
 * optimizer step's rows (the global batch; two rows per preference pair), and a fixed-shape engine
 * (WebGPU) pads every task to its plan's micro-batch: a 64-row plan under a batch of 8 computed 8x
 * the rows (measured 5.0x slower per step on SwiftShader, docs/model.md). DiLoCo rounds size their
 * inner steps from the plan and keep the flag's cap.
 */
/** Below this gradient size --fold-threads auto folds in the event loop (a thread hop costs more than the fold). */
export const FOLD_THREADS_MIN_BYTES = 64 << 20;

/**
 * The fold threads of a run (--fold-threads): auto = 0 for gradients under 64 MiB (tiny/small:
 * microseconds per fold), else min(4, cores - 1), at least 1 (the event loop keeps a core for the
 * decode and the finite scan; docs/scale.md "Ingest").
 */
export function foldThreadCount(c: Pick<CoordinatorConfig, 'foldThreads'>, paramCount: number): number {
  if (c.foldThreads !== 'auto') return Number(c.foldThreads);
  if (paramCount * 4 < FOLD_THREADS_MIN_BYTES) return 0;
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

/** The delta judge's scoring threads (--judge-threads): auto = min(8, cores - 1), at least 1. */
export function judgeThreadCount(c: Pick<CoordinatorConfig, 'judgeThreads'>): number {
  if (c.judgeThreads !== 'auto') return Number(c.judgeThreads);
  return Math.max(1, Math.min(8, availableParallelism() - 1));
}

export function plannedMicroBatchCap(c: Pick<CoordinatorConfig, 'mode' | 'objective' | 'globalBatch' | 'maxMicroBatch'>): number {
  if (c.mode === 'diloco') return c.maxMicroBatch;
  return Math.min(c.maxMicroBatch, c.globalBatch * (c.objective === 'dpo' ? 2 : 1));
}

export type CoordinatorConfig = z.output<typeof configSchema>;
export type CoordinatorConfigInput = z.input<typeof configSchema>;

/** flag name -> config key and how its value is read. */
const FLAGS: Record<string, { key: OptionKey; type: OptionSpec['type'] }> = Object.fromEntries(
  (Object.entries(OPTIONS) as Array<[OptionKey, OptionSpec]>).map(([k, o]) => [flagOf(k), { key: k, type: o.type }]),
);

function configError(message: string, hint = 'see --help'): AppError {
  return new AppError('ERR_CONFIG', `coordinator config: ${message}`, 400, hint);
}

function toNumber(flag: string, v: string, type: 'int' | 'float'): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw configError(`--${flag} expects a ${type === 'int' ? 'integer' : 'number'}, got "${v}"`);
  return n;
}

/** Validate a partial config object (from a file, a test or flags). Throws ERR_CONFIG. */
export function validateConfig(input: unknown): CoordinatorConfig {
  const r = configSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0];
    const key = issue.path.join('.');
    if (issue.code === 'unrecognized_keys') {
      const keys = (issue as { keys?: string[] }).keys ?? [];
      throw configError(`unknown option(s) ${keys.join(', ')}; allowed: ${Object.keys(configSchema.def.shape ?? {}).join(', ')}`);
    }
    throw configError(`${key ? `${key}: ` : ''}${issue.message}`);
  }
  return r.data;
}

export interface ParsedCli {
  config: CoordinatorConfig;
  help: boolean;
  /** True when the admin token was not given and must be generated. */
  adminTokenGenerated: boolean;
}

/** Flags + optional --config file + env (PORT, ADMIN_TOKEN). */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedCli {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' }, config: { type: 'string' }, 'no-resume': { type: 'boolean' } };
  for (const f of Object.keys(FLAGS)) options[f] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }) as { values: Record<string, string | boolean | undefined> });
  } catch (e) {
    throw configError(`${(e as Error).message.split('\n')[0]}; allowed flags: ${['--config', '--no-resume', ...Object.keys(FLAGS).map((f) => '--' + f)].join(' ')}`);
  }
  let fromFile: Record<string, unknown> = {};
  if (typeof values.config === 'string') {
    let text: string;
    try {
      text = readFileSync(values.config, 'utf8');
    } catch (e) {
      throw configError(`--config ${values.config}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      fromFile = JSON.parse(text);
    } catch (e) {
      throw configError(`--config ${values.config}: not valid JSON (${(e as Error).message})`, 'a JSON object with camelCase keys, e.g. {"preset":"tiny","globalBatch":16}');
    }
    if (typeof fromFile !== 'object' || fromFile === null || Array.isArray(fromFile)) throw configError(`--config ${values.config}: expected a JSON object`);
  }
  const merged: Record<string, unknown> = { ...fromFile };
  if (env.PORT !== undefined && env.PORT !== '') merged.port = toNumber('port (env PORT)', env.PORT, 'int');
  if (env.ADMIN_TOKEN) merged.adminToken = env.ADMIN_TOKEN;
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const v = values[flag];
    if (typeof v !== 'string') continue;
    merged[spec.key] = spec.type === 'string' ? v : toNumber(flag, v, spec.type);
  }
  if (values['no-resume']) merged.resume = false;
  const config = validateConfig(merged);
  return { config, help: values.help === true, adminTokenGenerated: config.adminToken === undefined };
}
