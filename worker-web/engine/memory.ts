// GPU memory probe. No WebGPU API reports total or free VRAM (gpuweb #5505), so allocate chunks
// under an 'out-of-memory' error scope until the cap or the first failure, free them all, and
// report what succeeded. A user cap always wins: we never probe past it.

export interface MemoryProbe {
  /** Bytes that could be allocated (<= capBytes). */
  usableBytes: number;
  capBytes: number;
  /** True if an allocation failed before the cap (the device really is smaller). */
  hitLimit: boolean;
  chunkBytes: number;
}

export async function probeMemory(device: GPUDevice, capBytes: number, opts: { chunkBytes?: number } = {}): Promise<MemoryProbe> {
  if (!(capBytes > 0)) throw new Error(`probeMemory: capBytes must be > 0, got ${capBytes}`);
  const chunk = Math.min(opts.chunkBytes ?? 64 * 1024 * 1024, device.limits.maxBufferSize, capBytes);
  const bufs: GPUBuffer[] = [];
  let usable = 0;
  let hitLimit = false;
  try {
    while (usable < capBytes) {
      const size = Math.min(chunk, capBytes - usable);
      const aligned = Math.max(4, Math.floor(size / 4) * 4);
      device.pushErrorScope('out-of-memory');
      const b = device.createBuffer({ size: aligned, usage: GPUBufferUsage.STORAGE, label: 'memory-probe' });
      const err = await device.popErrorScope();
      if (err) {
        b.destroy();
        hitLimit = true;
        break;
      }
      bufs.push(b);
      usable += aligned;
      if (aligned < 4 * 1024) break;
    }
  } finally {
    for (const b of bufs) b.destroy();
  }
  return { usableBytes: usable, capBytes, hitLimit, chunkBytes: chunk };
}
