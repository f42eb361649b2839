// Small buffer helpers shared by the backend and the harness.

export const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Storage buffer of at least `bytes` (rounded up to 16; zero-sized bindings are invalid). */
export function storageBuffer(device: GPUDevice, bytes: number, label: string): GPUBuffer {
  return device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: STORAGE(), label });
}

export function uploadBuffer(device: GPUDevice, data: Float32Array | Int32Array | Uint32Array, label: string): GPUBuffer {
  const b = storageBuffer(device, data.byteLength, label);
  if (data.byteLength > 0) device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
}

export function uniformBuffer(device: GPUDevice, data: Float32Array, label: string): GPUBuffer {
  const b = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label });
  device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
}

/** Copy `bytes` of each source into one staging buffer, submit with `encoder`, map, slice. */
export async function readBack(device: GPUDevice, encoder: GPUCommandEncoder, srcs: Array<{ buffer: GPUBuffer; bytes: number; offset?: number }>): Promise<ArrayBuffer[]> {
  const offsets: number[] = [];
  let total = 0;
  for (const s of srcs) {
    offsets.push(total);
    total += Math.ceil(s.bytes / 4) * 4;
  }
  const staging = device.createBuffer({ size: Math.max(4, total), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'readback' });
  srcs.forEach((s, i) => {
    if (s.bytes > 0) encoder.copyBufferToBuffer(s.buffer, s.offset ?? 0, staging, offsets[i], Math.ceil(s.bytes / 4) * 4);
  });
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const all = staging.getMappedRange().slice(0);
  staging.unmap();
  staging.destroy();
  return srcs.map((s, i) => all.slice(offsets[i], offsets[i] + s.bytes));
}
