// The Node worker's command line, parsed with node:util and validated with zod into one typed
// config. Bad input is an AppError (ERR_WORKER_ARGS / ERR_MEMORY_BYTES / ERR_WORKER_FAULT)
// whose message names the flag; main.ts prints it and exits with code 2.

import { parseLink, type LinkSpec } from '../client/link.ts';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AppError } from '../../shared/errors.ts';
import { parseBytes } from '../../shared/memory/units.ts';
import { parseFault, FAULT_FORMS, type FaultSpec } from '../client/faults.ts';

export const USAGE = `usage: npm run worker -- --url http://HOST:PORT [options]

  --url URL[,URL...]   coordinator address (http or https); several processes of one
                       run (coordinator --redis): tried in turn after a lost connection (required)
  --backend B          webgpu | cpu                                     (default webgpu)
  --memory SIZE        cap on the memory this worker offers, e.g. 2GiB  (default: probed)
  --fault F            ${FAULT_FORMS}  (default none)
  --name NAME          shown on the dashboard (<= 64 chars)             (default: host name)
  --seed N             seed for jitter and fault randomness             (default 1)
  --join-token TOKEN   for coordinators started with --join-token
  --link UP/DOWN       emulate a home connection, e.g. 10mbit/50mbit: sends and receives are
                       paced at these rates (bench:comm measures wall time this way)
  --trace FILE         append what the coordinator acknowledged (JSON lines: welcome, task rows,
                       ack, discard) for an outside audit of exactly-once (the chaos suite)
  --quiet              only warnings and errors
  -h, --help           this text`;

export interface NodeWorkerArgs {
  url: string;
  /** Every --url given (comma-separated), in order; url is the first. */
  urls: string[];
  backend: 'webgpu' | 'cpu';
  memoryCap?: number;
  fault: FaultSpec;
  name: string;
  seed: number;
  joinToken?: string;
  trace?: string;
  /** --link: paced uplink / downlink (worker-web/client/link.ts). */
  link?: LinkSpec;
  quiet: boolean;
  help: boolean;
}

const schema = z.object({
  url: z
    .string({ error: '--url is required (e.g. --url http://127.0.0.1:8080)' })
    .refine((list) => list.split(',').every((u) => {
      try {
        const p = new URL(u.trim());
        return p.protocol === 'http:' || p.protocol === 'https:';
      } catch {
        return false;
      }
    }), '--url must be an http:// or https:// address (or several, comma-separated), e.g. http://127.0.0.1:8080'),
  backend: z.enum(['webgpu', 'cpu'], { error: '--backend must be webgpu or cpu' }),
  name: z
    .string()
    .min(1, '--name must not be empty')
    .max(64, '--name must be at most 64 characters')
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), '--name must not contain control characters'),
  seed: z.number().int('--seed must be an integer').min(0, '--seed must be >= 0').max(2 ** 32 - 1, '--seed must be < 2^32'),
});

export function parseWorkerArgs(argv: string[], defaultName: string): NodeWorkerArgs {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        backend: { type: 'string', default: 'webgpu' },
        memory: { type: 'string' },
        fault: { type: 'string', default: 'none' },
        name: { type: 'string' },
        seed: { type: 'string', default: '1' },
        'join-token': { type: 'string' },
        trace: { type: 'string' },
        link: { type: 'string' },
        quiet: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (e) {
    throw new AppError('ERR_WORKER_ARGS', `worker: ${(e as Error).message}`, 400, 'run with --help for the flags');
  }
  if (values.help) {
    return { url: '', urls: [], backend: 'webgpu', fault: { kind: 'none' }, name: defaultName, seed: 1, quiet: false, help: true };
  }
  const seedText = String(values.seed);
  const parsed = schema.safeParse({
    url: values.url,
    backend: values.backend,
    name: values.name ?? defaultName,
    seed: /^\d+$/.test(seedText) ? Number(seedText) : NaN,
  });
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => i.message).join('; ');
    throw new AppError('ERR_WORKER_ARGS', `worker: ${msg}`, 400, 'run with --help for the flags');
  }
  const memoryCap = values.memory === undefined ? undefined : parseBytes(String(values.memory), '--memory');
  const fault = parseFault(String(values.fault));
  const joinToken = values['join-token'] === undefined ? undefined : String(values['join-token']);
  const trace = values.trace === undefined ? undefined : String(values.trace);
  if (trace === '') throw new AppError('ERR_WORKER_ARGS', 'worker: --trace needs a file path', 400, 'run with --help for the flags');
  const link = values.link === undefined ? undefined : parseLink(String(values.link));
  const urls = parsed.data.url.split(',').map((u) => u.trim());
  return { ...parsed.data, url: urls[0], urls, memoryCap, fault, joinToken, trace, link, quiet: Boolean(values.quiet), help: false };
}
