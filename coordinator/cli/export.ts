// `npm run export -- --checkpoint FILE --out DIR [--dtype f32|f16]`
// Writes a Hugging Face GPT-2 directory (model.safetensors, config.json, tokenizer.json,
// tokenizer_config.json, generation_config.json) from a coordinator checkpoint. Bad arguments:
// message on stderr, exit 2; unreadable checkpoint or unwritable directory: exit 1.

import { parseArgs } from 'node:util';
import { readCheckpoint } from '../checkpoint/index.ts';
import { AppError, isAppError } from '../../shared/errors.ts';
import { exportModel, parseDtype } from '../export/export.ts';

const USAGE = `usage: npm run export -- --checkpoint FILE --out DIR [--dtype f32|f16]
  --checkpoint FILE   a coordinator checkpoint (runs/<run>/ckpt-<step>.vtc)
  --out DIR           directory to write (created if missing; export files in it are overwritten)
  --dtype f32|f16     weight precision in model.safetensors (default f32)`;

function args(argv: string[]) {
  try {
    const { values } = parseArgs({
      args: argv,
      options: { checkpoint: { type: 'string' }, out: { type: 'string' }, dtype: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) return { help: true as const };
    if (!values.checkpoint) throw new Error('--checkpoint FILE is required');
    if (!values.out) throw new Error('--out DIR is required');
    return { checkpoint: values.checkpoint, out: values.out, dtype: parseDtype(values.dtype) };
  } catch (e) {
    throw new AppError('ERR_EXPORT_ARGS', `export: ${(e as Error).message}`, 400, 'run with --help for the options');
  }
}

function main(): void {
  let a: ReturnType<typeof args>;
  try {
    a = args(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    console.error(USAGE);
    process.exit(2);
  }
  if ('help' in a) {
    console.log(USAGE);
    return;
  }
  try {
    const ck = readCheckpoint(a.checkpoint);
    const files = exportModel(a.out, { config: ck.meta.model, params: ck.params, step: ck.meta.step }, { dtype: a.dtype });
    console.log(`exported step ${ck.meta.step} (${ck.meta.paramCount} parameters, ${a.dtype}) to ${a.out}:`);
    for (const f of files) console.log(`  ${f}`);
  } catch (e) {
    console.error(isAppError(e) ? e.message : (e as Error).stack);
    process.exit(1);
  }
}

main();
