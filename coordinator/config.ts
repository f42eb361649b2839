// The coordinator's ONE typed config: defaults < --config FILE (JSON) < env (PORT, ADMIN_TOKEN)
// < command-line flags. Validated with zod; an unknown or invalid option is an AppError
// (ERR_CONFIG) naming the option and what is allowed. Defaults are documented in USAGE and
// docs/operations.md.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AppError } from '../shared/errors.ts';
import { PRESET_NAMES } from '../shared/model/config.ts';

export const USAGE = `usage: npm start -- [options]      (or: npx tsx coordinator/main.ts [options])

  --port N               listen port; 0 picks a free one (env PORT)   (default 8080)
  --host H               listen address                                (default 0.0.0.0)
  --preset P             model: ${PRESET_NAMES.join(' | ')}   (default small)
  --data FILE            .txt or .jsonl training data (default: built-in arith-rev task)
  --seq-len N            tokens per training row (default: 16 for the built-in task, else the context length)
  --run-dir DIR          checkpoints and logs                          (default ./runs/default)
  --checkpoint-every N   steps between checkpoints; 0 = only on exit/admin (default 50)
  --keep-checkpoints K   newest checkpoints kept                       (default 3)
  --global-batch N       sequences per optimizer step                  (default 32)
  --max-steps N          stop training after N steps; 0 = no limit     (default 0)
  --seed N               init, data order                              (default 1)
  --lr X                 peak learning rate                            (default 1e-3)
  --min-lr X             final learning rate of the cosine schedule    (default 1e-4)
  --warmup-steps N       linear warm-up steps                          (default 20)
  --decay-steps N        cosine decay length; 0 = max-steps or 10000   (default 0)
  --weight-decay X       AdamW decoupled weight decay                  (default 0.01)
  --beta1 X / --beta2 X  AdamW moments                                 (default 0.9 / 0.999)
  --eps X                AdamW epsilon                                 (default 1e-8)
  --grad-clip X          global-norm clip; 0 = off                     (default 1.0)
  --aggregate A          mean | trimmed-mean | centered-clip (docs/hardening.md) (default mean)
  --verify-rate X        base share of results re-computed on the CPU; 0 = off (default 0.1)
  --verify-tolerance X   relative gradient/loss error allowed by re-computation (default 0.05)
  --verify-threads N     worker threads that run the re-computations, off the main loop (default 1)
  --norm-limit X         refuse gradients > X x the recent median norm    (default 6)
  --rate-limit N         messages per second per worker connection       (default 20)
  --allowed-origins L    comma-separated extra origins for the socket endpoints (default: same origin only)
  --eval-every N         steps between held-out evaluations; 0 = off   (default 25)
  --eval-samples N       held-out rows/pairs per evaluation            (default 32)
  --lease-ms N           a task not returned within N ms is re-leased  (default 30000)
  --heartbeat-ms N       worker heartbeat interval                     (default 2000)
  --dead-after-ms N      silence after which a worker is dead          (default 10000)
  --max-micro-batch N    cap on any worker's task size (sequences)     (default 64)
  --min-workers N        start training once N replica workers joined  (default 1)
  --admin-token T        bearer token for /api/admin/* (env ADMIN_TOKEN; default: generated, printed)
  --join-token T         workers must present it in hello (default: open cluster)
  --no-resume            start fresh even if the run dir has checkpoints
  --init-from DIR        initial weights from an exported model directory (model.safetensors + config.json,
                         e.g. from \`npm run export\`) when the run dir has no checkpoint (or with --no-resume);
                         its config.json must match --preset. A checkpoint in the run dir still wins (default: off)
  --log-level L          fatal|error|warn|info|debug|trace|silent      (default info)
  --config FILE          JSON file with any of these options (camelCase keys)
  -h, --help             this text`;

const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.number({ error: `${name} must be a number` }).int(`${name} must be an integer`).min(min, `${name} must be >= ${min}`).max(max, `${name} must be <= ${max}`);
const pos = (name: string) =>
  z.number({ error: `${name} must be a number` }).refine((v) => Number.isFinite(v) && v > 0, `${name} must be a positive number`);
const nonneg = (name: string) =>
  z.number({ error: `${name} must be a number` }).refine((v) => Number.isFinite(v) && v >= 0, `${name} must be >= 0`);

export const AGGREGATORS = ['mean', 'trimmed-mean', 'centered-clip'] as const;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const configSchema = z
  .object({
    port: int('--port', 0, 65535).default(8080),
    host: z.string().min(1, '--host must not be empty').default('0.0.0.0'),
    preset: z.enum(PRESET_NAMES as [string, ...string[]], { error: `--preset must be one of: ${PRESET_NAMES.join(', ')}` }).default('small'),
    data: z.string().min(1, '--data must be a file path').optional(),
    seqLen: int('--seq-len', 1).optional(),
    runDir: z.string().min(1, '--run-dir must not be empty').default('./runs/default'),
    checkpointEvery: int('--checkpoint-every', 0).default(50),
    keepCheckpoints: int('--keep-checkpoints', 1, 1000).default(3),
    globalBatch: int('--global-batch', 1, 1 << 20).default(32),
    maxSteps: int('--max-steps', 0).default(0),
    seed: int('--seed', 0, 2 ** 32 - 1).default(1),
    lr: pos('--lr').default(1e-3),
    minLr: nonneg('--min-lr').default(1e-4),
    warmupSteps: int('--warmup-steps', 0).default(20),
    decaySteps: int('--decay-steps', 0).default(0),
    weightDecay: nonneg('--weight-decay').default(0.01),
    beta1: z.number().min(0, '--beta1 must be in [0, 1)').lt(1, '--beta1 must be in [0, 1)').default(0.9),
    beta2: z.number().min(0, '--beta2 must be in [0, 1)').lt(1, '--beta2 must be in [0, 1)').default(0.999),
    eps: pos('--eps').default(1e-8),
    gradClip: nonneg('--grad-clip').default(1.0),
    aggregate: z.enum(AGGREGATORS, { error: `--aggregate must be one of: ${AGGREGATORS.join(', ')}` }).default('mean'),
    verifyRate: z.number({ error: '--verify-rate must be a number' }).min(0, '--verify-rate must be in [0, 1]').max(1, '--verify-rate must be in [0, 1]').default(0.1),
    verifyTolerance: pos('--verify-tolerance').default(0.05),
    verifyThreads: int('--verify-threads', 1, 64).default(1),
    normLimit: z.number({ error: '--norm-limit must be a number' }).min(1.5, '--norm-limit must be >= 1.5').default(6),
    rateLimit: pos('--rate-limit').default(20),
    allowedOrigins: z.string().max(2000).default(''),
    evalEvery: int('--eval-every', 0).default(25),
    evalSamples: int('--eval-samples', 1, 100000).default(32),
    leaseMs: int('--lease-ms', 100).default(30_000),
    heartbeatMs: int('--heartbeat-ms', 50).default(2_000),
    deadAfterMs: int('--dead-after-ms', 200).default(10_000),
    maxMicroBatch: int('--max-micro-batch', 1).default(64),
    minWorkers: int('--min-workers', 1).default(1),
    adminToken: z.string().min(8, '--admin-token must be at least 8 characters').optional(),
    joinToken: z.string().min(1).max(128, '--join-token must be at most 128 characters').optional(),
    resume: z.boolean().default(true),
    initFrom: z.string().min(1, '--init-from must be a directory path').optional(),
    logLevel: z.enum(LOG_LEVELS, { error: `--log-level must be one of: ${LOG_LEVELS.join(', ')}` }).default('info'),
  })
  .strict()
  .refine((c) => c.deadAfterMs > c.heartbeatMs, { message: '--dead-after-ms must be larger than --heartbeat-ms', path: ['deadAfterMs'] });

export type CoordinatorConfig = z.output<typeof configSchema>;
export type CoordinatorConfigInput = z.input<typeof configSchema>;

/** flag name -> config key and type. */
const FLAGS: Record<string, { key: keyof CoordinatorConfig; type: 'int' | 'float' | 'string' }> = {
  port: { key: 'port', type: 'int' },
  host: { key: 'host', type: 'string' },
  preset: { key: 'preset', type: 'string' },
  data: { key: 'data', type: 'string' },
  'seq-len': { key: 'seqLen', type: 'int' },
  'run-dir': { key: 'runDir', type: 'string' },
  'checkpoint-every': { key: 'checkpointEvery', type: 'int' },
  'keep-checkpoints': { key: 'keepCheckpoints', type: 'int' },
  'global-batch': { key: 'globalBatch', type: 'int' },
  'max-steps': { key: 'maxSteps', type: 'int' },
  seed: { key: 'seed', type: 'int' },
  lr: { key: 'lr', type: 'float' },
  'min-lr': { key: 'minLr', type: 'float' },
  'warmup-steps': { key: 'warmupSteps', type: 'int' },
  'decay-steps': { key: 'decaySteps', type: 'int' },
  'weight-decay': { key: 'weightDecay', type: 'float' },
  beta1: { key: 'beta1', type: 'float' },
  beta2: { key: 'beta2', type: 'float' },
  eps: { key: 'eps', type: 'float' },
  'grad-clip': { key: 'gradClip', type: 'float' },
  aggregate: { key: 'aggregate', type: 'string' },
  'verify-rate': { key: 'verifyRate', type: 'float' },
  'verify-tolerance': { key: 'verifyTolerance', type: 'float' },
  'verify-threads': { key: 'verifyThreads', type: 'int' },
  'norm-limit': { key: 'normLimit', type: 'float' },
  'rate-limit': { key: 'rateLimit', type: 'float' },
  'allowed-origins': { key: 'allowedOrigins', type: 'string' },
  'eval-every': { key: 'evalEvery', type: 'int' },
  'eval-samples': { key: 'evalSamples', type: 'int' },
  'lease-ms': { key: 'leaseMs', type: 'int' },
  'heartbeat-ms': { key: 'heartbeatMs', type: 'int' },
  'dead-after-ms': { key: 'deadAfterMs', type: 'int' },
  'max-micro-batch': { key: 'maxMicroBatch', type: 'int' },
  'min-workers': { key: 'minWorkers', type: 'int' },
  'admin-token': { key: 'adminToken', type: 'string' },
  'join-token': { key: 'joinToken', type: 'string' },
  'init-from': { key: 'initFrom', type: 'string' },
  'log-level': { key: 'logLevel', type: 'string' },
};

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
