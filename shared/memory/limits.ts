// WebGPU per-buffer limits: every buffer a kernel binds must fit maxStorageBufferBindingSize, and
// every allocation maxBufferSize (defaults 128 MiB / 256 MiB). This flags the parameter tensors
// and activation buffers that do not, and says how to split them into row blocks.

import { buildParameterTable } from '../model/parameters.ts';
import type { ModelConfig } from '../model/config.ts';
import { activationBuffers } from './activations.ts';
import { WEBGPU_DEFAULT_LIMITS } from './plan.ts';
import { formatBytes } from './units.ts';

export interface BufferLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface LimitFlag {
  /** A parameter's gradient and Adam moments have its shape too, so they split the same way. */
  kind: 'parameter' | 'activation';
  name: string;
  shape: number[];
  bytes: number;
  /** Which limit it exceeds. */
  limit: 'maxStorageBufferBindingSize' | 'maxBufferSize';
  limitBytes: number;
  /** Row blocks needed so each fits the binding limit. */
  blocks: number;
  /** Rows (of shape[0], or of the leading dims flattened) per block. */
  rowsPerBlock: number;
  advice: string;
}

/**
 * Flags parameter tensors (`paramBytes` per value: 4 for training, the precision's for inference) (their gradients and Adam moments have the same shape) and the
 * activation buffers of a (b, s) micro-batch that exceed the binding or buffer limit.
 */
export function checkBufferLimits(
  c: ModelConfig, b: number, s: number, limits: Partial<BufferLimits> = {}, withActivations = true, paramBytes = 4,
): LimitFlag[] {
  const maxBuf = limits.maxBufferSize ?? WEBGPU_DEFAULT_LIMITS.maxBufferSize;
  const maxBind = limits.maxStorageBufferBindingSize ?? WEBGPU_DEFAULT_LIMITS.maxStorageBufferBindingSize;
  const cap = Math.min(maxBind, maxBuf);
  const flags: LimitFlag[] = [];
  const consider = (kind: LimitFlag['kind'], name: string, shape: number[], bytes: number, type = 'fp32') => {
    if (bytes <= cap) return;
    const rows = shape.slice(0, -1).reduce((x, y) => x * y, 1) || 1;
    const rowBytes = bytes / rows;
    const limit = bytes > maxBuf ? 'maxBufferSize' : 'maxStorageBufferBindingSize';
    if (rowBytes > cap) {
      flags.push({ kind, name, shape, bytes, limit, limitBytes: cap, blocks: Math.ceil(bytes / cap), rowsPerBlock: 0,
        advice: `one row alone (${formatBytes(rowBytes)}) exceeds ${formatBytes(cap)}: split the last dimension too` });
      return;
    }
    const rowsPerBlock = Math.floor(cap / rowBytes);
    const blocks = Math.ceil(rows / rowsPerBlock);
    flags.push({ kind, name, shape, bytes, limit, limitBytes: cap, blocks, rowsPerBlock,
      advice: `${shape.join('x')} ${type} = ${formatBytes(bytes)} > ${limit} ${formatBytes(limit === 'maxBufferSize' ? maxBuf : maxBind)}: split into ${blocks} row blocks of <= ${rowsPerBlock} rows` });
  };
  const table = buildParameterTable(c);
  const type = paramBytes === 4 ? 'fp32' : paramBytes === 2 ? '16-bit' : paramBytes === 1 ? 'int8' : `${paramBytes}-byte`;
  for (const t of table.tensors) consider('parameter', t.name, t.shape, t.size * paramBytes, type);
  if (withActivations) {
    for (const a of activationBuffers(c, b, s)) consider('activation', a.name, a.shape, a.bytes);
  }
  return flags;
}
