// Device-spec parser for the cluster planner and simulator.
//
// Grammar (whitespace ignored around items):
//   SPEC  := ITEM ("," ITEM)*
//   ITEM  := [COUNT "x"] SIZE ["@" SPEED] ["/" LINK]
//   COUNT := positive integer (default 1)
//   SIZE  := number + unit: B, KB, MB, GB, TB (10^n) or KiB, MiB, GiB, TiB (2^n), e.g. 8GiB, 80GB
//   SPEED := sustained fp32 GFLOP/s this device reaches in our kernels, e.g. 20000 (optional
//            suffix GFLOPS or TFLOPS: 20TFLOPS = 20000); default DEFAULT_GFLOPS
//   LINK  := its network bandwidth to the coordinator: 100Mbps, 1Gbps, 12.5MB/s; default DEFAULT_LINK_BPS
// Examples: "100x8GiB,20x24GiB,1x80GB", "4x16GiB@20000/1Gbps", "30x4GiB@1500/50Mbps".

import { AppError } from '../errors.ts';
import { parseBandwidth, parseBytes } from './units.ts';

/** A laptop's integrated GPU in WebGPU sustains on the order of 1 TFLOP/s fp32 in tiled matmuls. */
export const DEFAULT_GFLOPS = 1000;
/** A home uplink: 100 Mbit/s. */
export const DEFAULT_LINK_BPS = 100e6;
/**
 * A bound so a typo (or an API call) cannot allocate huge plans: 10,000 devices plan in ~1 s and
 * answer ~7 MB of JSON (one assignment each).
 */
export const MAX_DEVICES = 10_000;

export interface Device {
  /** Index in the expanded list (0-based), stable for --leave. */
  id: number;
  /** The item of the spec this device came from, e.g. "8GiB@1000/100Mbps". */
  spec: string;
  memoryBytes: number;
  gflops: number;
  linkBps: number;
}

function specError(item: string, why: string): AppError {
  return new AppError('ERR_MEMORY_DEVICES', `device spec item "${item}": ${why}`, 400,
    'write items like 100x8GiB, 1x80GB or 4x16GiB@20000/1Gbps, separated by commas');
}

export function parseDeviceSpec(spec: string): Device[] {
  if (typeof spec !== 'string' || spec.trim() === '') {
    throw new AppError('ERR_MEMORY_DEVICES', 'device spec is empty', 400, 'e.g. --cluster 100x8GiB,20x24GiB,1x80GB');
  }
  const devices: Device[] = [];
  for (const raw of spec.split(',')) {
    const item = raw.trim();
    if (item === '') throw specError(item, 'empty item (two commas in a row, or a trailing comma?)');
    const m = /^(?:(\d+)\s*x\s*)?([^@/]+?)(?:@([^/]+))?(?:\/(.+))?$/i.exec(item);
    if (!m) throw specError(item, 'does not match [COUNTx]SIZE[@GFLOPS][/LINK]');
    const count = m[1] === undefined ? 1 : Number(m[1]);
    if (!Number.isSafeInteger(count) || count < 1) throw specError(item, `count must be a positive integer, got "${m[1]}"`);
    if (!/^\d/.test(m[2].trim())) throw specError(item, `size "${m[2]}" has no number`);
    const memoryBytes = parseBytes(m[2], `device spec item "${item}"`);
    const gflops = m[3] === undefined ? DEFAULT_GFLOPS : parseSpeed(item, m[3]);
    let linkBps = DEFAULT_LINK_BPS;
    if (m[4] !== undefined) linkBps = parseBandwidth(m[4], `device spec item "${item}"`);
    if (devices.length + count > MAX_DEVICES) throw specError(item, `more than ${MAX_DEVICES} devices in all`);
    const one = `${m[2].trim()}${m[3] !== undefined ? '@' + m[3].trim() : ''}${m[4] !== undefined ? '/' + m[4].trim() : ''}`;
    for (let i = 0; i < count; i++) devices.push({ id: devices.length, spec: one, memoryBytes, gflops, linkBps });
  }
  return devices;
}

function parseSpeed(item: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(gflops|tflops|g|t)?\s*$/i.exec(text);
  if (!m || !(Number(m[1]) > 0)) throw specError(item, `speed "${text}" must be a positive GFLOP/s number (or e.g. 20TFLOPS)`);
  const u = (m[2] ?? '').toLowerCase();
  return Number(m[1]) * (u.startsWith('t') ? 1000 : 1);
}

/** "100x8GiB, 20x24GiB": groups identical consecutive devices back into a short spec. */
export function summariseDevices(devices: Device[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < devices.length) {
    let j = i;
    while (j < devices.length && devices[j].spec === devices[i].spec && devices[j].memoryBytes === devices[i].memoryBytes) j++;
    parts.push(`${j - i}x${devices[i].spec}`);
    i = j;
  }
  return parts.join(',');
}
