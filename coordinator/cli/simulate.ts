// `npm run simulate -- --model gpt2 | --params 7e9 | --config FILE [--cluster SPEC] ...`
// Prints a readable table; with --json, one JSON object on the last line. Invalid input: the
// error on stderr and exit code 2. The work is shared/memory/simulate.ts (also POST /api/simulate).

import { readFileSync } from 'node:fs';
import { AppError } from '../../shared/errors.ts';
import { simulate, type SimulateResult } from '../../shared/memory/simulate.ts';
import { formatBytes, formatDuration } from '../../shared/memory/units.ts';

const USAGE = `usage: npm run simulate -- (--model PRESET | --params N | --config FILE) [options]
  --model PRESET        tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl
  --params N            bare parameter count: 7e9, 124M, 1.5B
  --config FILE         JSON model config ({vocabSize, contextLength, nLayer, nHead, nEmbd} or HF n_embd/n_layer/...)
  --layers N            layers to split a bare count into (default inferred)
  --mode train|infer    default train (20 B/param)
  --precision P         fp32|fp16|bf16|int8 (inference); default fp32
  --batch N --seq N     micro-batch and sequence length for the explicit estimate
  --global-batch N      sequences per optimizer step for the step time (default 64)
  --max-micro-batch N   largest micro-batch a pipeline plans (the coordinator's --max-micro-batch); default as memory allows
  --cluster SPEC        devices: [COUNTx]SIZE[@GFLOPS][/LINK],...  e.g. 100x8GiB,20x24GiB,1x80GB or 4x16GiB@20000/1Gbps
  --coordinator-link BW coordinator bandwidth, e.g. 1Gbps (default)
  --max-buffer-size S / --max-binding-size S   adapter limits (default 256MiB / 128MiB)
  --leave IDS           device ids that leave (comma list); --join SPEC devices that join
  --churn               Monte Carlo of volunteers coming and going, with
    --mean-session 4h --mean-offline 12h --horizon 24h --trials 20 --seed 1 --distribution exponential|lognormal
  --json                one JSON object on the last line`;

function usageError(msg: string): AppError {
  return new AppError('ERR_SIMULATE_ARGS', `simulate: ${msg}`, 400, 'run with --help for the options');
}

/** "7e9", "124M", "1.5B", "350k" -> number. */
export function parseCount(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*([kmbt]?)\s*$/i.exec(text);
  if (!m) throw usageError(`--params must be a positive number like 7e9, 124M or 1.5B, got "${text}"`);
  const mult: Record<string, number> = { '': 1, k: 1e3, m: 1e6, b: 1e9, t: 1e12 };
  return Number(m[1]) * mult[m[2].toLowerCase()];
}

function int(flag: string, text: string): number {
  if (!/^\d+$/.test(text)) throw usageError(`${flag} must be a positive integer, got "${text}"`);
  return Number(text);
}

function readConfig(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw usageError(`cannot read --config ${file}: ${(e as Error).message}`);
  }
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw usageError(`--config ${file} is not JSON: ${(e as Error).message}`);
  }
  if (j && typeof j === 'object' && 'n_embd' in j) {
    // Hugging Face GPT-2 config.json.
    return { vocabSize: j.vocab_size, contextLength: j.n_positions ?? j.n_ctx, nLayer: j.n_layer, nHead: j.n_head, nEmbd: j.n_embd };
  }
  return j;
}

export function argsToInput(argv: string[]): { input: Record<string, unknown>; json: boolean; help: boolean } {
  const input: Record<string, unknown> = {};
  const churn: Record<string, unknown> = {};
  let wantChurn = false;
  let json = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const val = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined || (v.startsWith('--') && v.length > 2)) throw usageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--help': case '-h': help = true; break;
      case '--json': json = true; break;
      case '--churn': wantChurn = true; break;
      case '--model': input.model = val(); break;
      case '--params': input.params = parseCount(val()); break;
      case '--config': input.config = readConfig(val()); break;
      case '--layers': input.layers = int(flag, val()); break;
      case '--mode': input.mode = val(); break;
      case '--precision': input.precision = val(); break;
      case '--batch': input.batch = int(flag, val()); break;
      case '--seq': input.seq = int(flag, val()); break;
      case '--global-batch': input.globalBatch = int(flag, val()); break;
      case '--max-micro-batch': input.maxMicroBatch = int(flag, val()); break;
      case '--cluster': input.cluster = val(); break;
      case '--coordinator-link': input.coordinatorLink = val(); break;
      case '--max-buffer-size': input.maxBufferSize = val(); break;
      case '--max-binding-size': input.maxStorageBufferBindingSize = val(); break;
      case '--leave': input.leave = val().split(',').map((s) => int('--leave', s.trim())); break;
      case '--join': input.join = val(); break;
      case '--mean-session': churn.meanSession = val(); wantChurn = true; break;
      case '--mean-offline': churn.meanOffline = val(); break;
      case '--horizon': churn.horizon = val(); break;
      case '--trials': churn.trials = int(flag, val()); break;
      case '--seed': churn.seed = int(flag, val()); break;
      case '--distribution': churn.distribution = val(); break;
      default: throw usageError(`unknown argument "${a}"`);
    }
  }
  if (wantChurn) input.churn = { meanSession: '4h', ...churn };
  else if (Object.keys(churn).length) throw usageError(`${Object.keys(churn).map((k) => k).join(', ')} need --churn`);
  return { input, json, help };
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

export function renderTable(r: SimulateResult): string {
  const e = r.estimate;
  const out: string[] = [];
  out.push(`Model ${r.model}: ${r.params.toLocaleString('en-US')} params; mode ${r.mode}, ${r.precision}, ${r.bytesPerParam} B/param`);
  out.push(`Rule: ${e.rule}`);
  for (const k of ['weights', 'gradients', 'optimizer', 'activations'] as const) {
    out.push(`  ${pad(k, 12)} ${formatBytes(r.breakdown[k])}`);
  }
  out.push(`  ${pad('total', 12)} ${formatBytes(r.totalBytes)}   (GB = 1e9 bytes, GiB = 2^30)`);
  if (e.explicit) {
    const x = e.explicit;
    out.push(`Explicit estimate for micro-batch ${x.batch} x seq ${x.seq}: ${formatBytes(x.totalBytes)} (${x.ratioToRule.toFixed(2)}x the rule)`);
    out.push(`  formula: ${x.formula}`);
    out.push(`  per-layer activations ${formatBytes(x.perLayerActivations)}, all layers ${formatBytes(x.layerActivations)}, logits ${formatBytes(x.logits)}${x.kvCache ? `, KV cache ${formatBytes(x.kvCache)}` : ''}`);
    out.push(`  ${x.comparison}`);
  }
  for (const f of e.bufferFlags) out.push(`Buffer limit: ${f.kind} ${f.name}: ${f.advice}`);
  for (const n of e.notes) out.push(`Note: ${n}`);
  const c = r.cluster;
  if (c) {
    out.push('');
    out.push(`Cluster ${c.spec}: ${c.devices} devices, ${formatBytes(c.capacityBytes)} in all; one copy needs ${formatBytes(c.neededBytes)}`);
    out.push(`  ${c.fits ? 'FITS' : 'DOES NOT FIT'}: ${c.reason}`);
    out.push(`  ${pad('device', 7)} ${pad('spec', 22)} ${pad('role', 10)} ${pad('unit/stage', 10)} ${pad('blocks', 11)} ${pad('bytes', 22)} ${pad('used', 5)} mb x seq`);
    const rows = c.assignments.map((a) => `  ${pad(String(a.device), 7)} ${pad(a.spec, 22)} ${pad(a.role, 10)} ${pad(a.unit === undefined ? '-' : a.stage === undefined ? String(a.unit) : `${a.unit}/${a.stage}`, 10)} ${pad(a.layerRange ? `${a.role === 'stage' && a.embeddings ? 'E+' : ''}[${a.layerRange[0]},${a.layerRange[1]})${a.role === 'stage' && a.head ? '+H' : ''}` : '-', 11)} ${pad(formatBytes(a.bytes), 22)} ${pad(`${(a.usedShare * 100).toFixed(0)}%`, 5)} ${a.microBatch === undefined ? '' : `${a.microBatch} x ${a.seqLen}`}`);
    const shown = rows.slice(0, 40);
    out.push(...shown);
    if (rows.length > shown.length) out.push(`  ... ${rows.length - shown.length} more devices (see --json)`);
    const reasons = new Map<string, number>();
    for (const u of c.unassigned) reasons.set(u.reason, (reasons.get(u.reason) ?? 0) + 1);
    for (const [why, n] of reasons) out.push(`  unassigned x${n}: ${why}`);
    out.push('  (E+: also holds the embeddings wte + wpe; +H: ln_f and the LM head, its own copy of the tied wte; bytes: 20 B/param, for a stage + the activations of its micro-batch; mb x seq: the micro-batch that fits)');
    for (const u of c.units.filter((x) => x.kind === 'pipeline')) {
      out.push(`  pipeline ${u.index}: ${u.devices.length} stage(s), ${u.inFlight} micro-batch(es) in flight, bubble ${((u.bubble ?? 0) * 100).toFixed(0)}%, ${u.tokensPerSec.toFixed(0)} tokens/s`);
    }
    if (c.step) {
      out.push(`Step estimate: ${formatDuration(c.step.stepSeconds)} per step, ${c.step.tokensPerSec.toFixed(0)} tokens/s`);
      for (const l of c.step.arithmetic) out.push(`  ${l}`);
    }
  }
  if (r.change) {
    out.push('');
    out.push(`Change: ${r.change.reason}`);
    for (const m of r.change.moves.slice(0, 20)) out.push(`  device ${m.device}: receives ${m.params.toLocaleString('en-US')} params = ${formatBytes(m.bytes)} (${m.why})`);
    if (r.change.after.step) out.push(`  new step estimate: ${formatDuration(r.change.after.step.stepSeconds)}, ${r.change.after.step.tokensPerSec.toFixed(0)} tokens/s`);
  }
  if (r.churn) {
    const h = r.churn;
    out.push('');
    out.push(`Churn (${h.trials} trials x ${formatDuration(h.horizonSeconds)}, ${h.distribution} sessions, seed ${h.seed}): ${h.reason}`);
    out.push(`  covered share min/mean/max: ${(h.coveredShareMin * 100).toFixed(1)}% / ${(h.coveredShare * 100).toFixed(1)}% / ${(h.coveredShareMax * 100).toFixed(1)}%; devices online on average ${h.meanOnline.toFixed(1)}; ${h.arrivalsAndDeparturesPerHour.toFixed(1)} arrivals+departures per hour`);
  }
  return out.join('\n');
}

export function main(argv: string[]): number {
  try {
    const { input, json, help } = argsToInput(argv);
    if (help) {
      console.log(USAGE);
      return 0;
    }
    const r = simulate(input);
    if (json) {
      console.log(JSON.stringify(r));
    } else {
      console.log(renderTable(r));
    }
    return 0;
  } catch (e) {
    if (e instanceof AppError || (e as { code?: string }).code === 'ERR_MODEL_CONFIG') {
      console.error(`error [${(e as AppError).code}]: ${(e as Error).message}`);
      return 2;
    }
    console.error(e);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('coordinator/cli/simulate.ts')) {
  process.exitCode = main(process.argv.slice(2));
}
