// Command-line options of `npm run bench:kernels`. Plain flags, validated: a bad value is an
// AppError naming the flag, so a typo never silently benchmarks the wrong thing.

import { AppError } from '../shared/errors.ts';
import { PRESET_NAMES, type PresetName } from '../shared/model/config.ts';

export interface BenchOptions {
  /** Square matmul sizes n (n x n x n). */
  sizes: number[];
  /** Preset whose GPT shapes (BT x C x 3C, ...) are measured and whose step is timed. */
  preset: PresetName;
  /** Micro-batch for the GPT shapes and the step. */
  B: number;
  T: number;
  /** Time budget of one sample (one peer, one shape), ms; bigger shapes get fewer iterations. */
  budgetMs: number;
  /** A shape whose single warm-up run exceeds this is skipped (SwiftShader at 1024^3 takes seconds). */
  maxRunMs: number;
  /** Iterations ceiling per measurement. */
  maxIters: number;
  /** Interleaved samples per peer and shape; the best is reported. */
  rounds: number;
  peers: { tfjs: boolean; jax: boolean };
  /** Seed of the output elements each matmul is checked at (random per run unless given). */
  checkSeed: number;
  parts: { matmul: boolean; gptShapes: boolean; step: boolean };
}

const HELP = `usage: npm run bench:kernels -- [options]
  --quick              sizes 128,256; tiny preset; 1 s samples, 2 rounds (a smoke run)
  --sizes 128,256,512  square matmul sizes (default 128,256,512,1024)
  --preset NAME        GPT preset for shapes and the step (${PRESET_NAMES.join(', ')}; default small)
  --batch B --seq T    micro-batch of the GPT shapes and the step (default 4 x min(contextLength,128);
                       on a software adapter 2 x min(contextLength,64))
  --budget-ms N        time budget of one timed sample (default 3000)
  --rounds N           interleaved samples per peer; the best is reported (default 3)
  --max-run-ms N       skip a shape whose one warm-up run takes longer (default 20000)
  --max-iters N        iteration ceiling per sample (default 1000)
  --check-seed N       seed of the sampled output elements checked per matmul (default: random, printed)
  --no-tfjs --no-jax   leave a peer out (a requested peer that cannot run makes the exit code 1)
  --no-square --no-gpt-shapes --no-step   leave a part out`;

function positiveInt(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n <= 0) {
    throw new AppError('ERR_BENCH_ARGS', `bench:kernels: ${flag} needs a positive integer, got ${String(v)}`, 2, HELP);
  }
  return n;
}

export function parseBenchArgs(argv: string[]): BenchOptions | 'help' {
  const o: BenchOptions = {
    sizes: [128, 256, 512, 1024],
    preset: 'small',
    B: 0,
    T: 0,
    budgetMs: 3000,
    maxRunMs: 20_000,
    // High enough that on a GPU (~0.1 ms per 512^3 matmul) a sample is long against the one
    // read-back that ends it; on SwiftShader the time budget binds long before.
    maxIters: 1000,
    rounds: 3,
    peers: { tfjs: true, jax: true },
    checkSeed: 1 + Math.floor(Math.random() * 0x7fffffff),
    parts: { matmul: true, gptShapes: true, step: true },
  };
  let sizesGiven = false;
  let presetGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--help': case '-h': return 'help';
      case '--quick':
        if (!sizesGiven) o.sizes = [128, 256];
        if (!presetGiven) o.preset = 'tiny';
        o.budgetMs = 1000; o.maxRunMs = 5000; o.maxIters = 200; o.rounds = 2;
        break;
      case '--sizes': {
        const v = argv[++i];
        o.sizes = (v ?? '').split(',').map((s) => positiveInt('--sizes', s));
        sizesGiven = true;
        break;
      }
      case '--preset': {
        const v = argv[++i];
        if (!v || !(PRESET_NAMES as string[]).includes(v)) {
          throw new AppError('ERR_BENCH_ARGS', `bench:kernels: unknown --preset ${String(v)}`, 2, `one of ${PRESET_NAMES.join(', ')}`);
        }
        o.preset = v as PresetName; presetGiven = true;
        break;
      }
      case '--batch': o.B = positiveInt(a, argv[++i]); break;
      case '--seq': o.T = positiveInt(a, argv[++i]); break;
      case '--budget-ms': o.budgetMs = positiveInt(a, argv[++i]); break;
      case '--max-run-ms': o.maxRunMs = positiveInt(a, argv[++i]); break;
      case '--max-iters': o.maxIters = positiveInt(a, argv[++i]); break;
      case '--rounds': o.rounds = positiveInt(a, argv[++i]); break;
      case '--check-seed': o.checkSeed = positiveInt(a, argv[++i]); break;
      case '--no-tfjs': o.peers.tfjs = false; break;
      case '--no-jax': o.peers.jax = false; break;
      case '--no-square': o.parts.matmul = false; break;
      case '--no-gpt-shapes': o.parts.gptShapes = false; break;
      case '--no-step': o.parts.step = false; break;
      default:
        throw new AppError('ERR_BENCH_ARGS', `bench:kernels: unknown option ${a}`, 2, HELP);
    }
  }
  return o;
}

export { HELP as BENCH_HELP };
