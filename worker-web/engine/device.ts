// Adapter and device acquisition. Asks for the adapter's OWN limits (the defaults cap buffers at
// 256 MiB and bindings at 128 MiB, far below what desktop GPUs allow) and useful optional
// features; if that request fails (some drivers reject their own maxima), retries with defaults.

import { AppError } from '../../shared/errors.ts';
import type { AdapterInfo as WireAdapterInfo } from '../../shared/protocol/messages.ts';

/**
 * The adapter as the engine sees it: what `hello` carries (vendor, architecture, description,
 * isSoftware: SwiftShader, a fallback adapter or another CPU rasteriser, ~100x slower than a GPU),
 * plus GPUAdapterInfo.device for reports.
 */
export interface AdapterInfo extends WireAdapterInfo {
  device: string;
}

export interface EngineDevice {
  device: GPUDevice;
  adapter: GPUAdapter;
  info: AdapterInfo;
  /** True if the device got the adapter's own limits, false if it fell back to defaults. */
  adapterLimits: boolean;
  features: string[];
}

const WANTED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

const WANTED_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'];

/** SwiftShader / llvmpipe / WARP & co from an adapter info (GPUAdapter.info or GPUDevice.adapterInfo). */
export function isSoftwareInfo(i: Partial<GPUAdapterInfo> | undefined): boolean {
  if (!i) return false;
  const text = `${i.vendor ?? ''} ${i.architecture ?? ''} ${i.device ?? ''} ${i.description ?? ''}`.toLowerCase();
  return /swiftshader|llvmpipe|lavapipe|software|warp|microsoft basic/.test(text) || i.vendor === '0x1ae0' ||
    Boolean((i as { isFallbackAdapter?: boolean }).isFallbackAdapter);
}

export function adapterInfo(adapter: GPUAdapter): AdapterInfo {
  const i = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
  const vendor = i?.vendor ?? '';
  const architecture = i?.architecture ?? '';
  const device = i?.device ?? '';
  const description = i?.description ?? '';
  // SwiftShader: Dawn reports architecture "swiftshader" (Vulkan vendor id 0x1ae0 elsewhere).
  const isSoftware = isSoftwareInfo(i) || Boolean((adapter as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter);
  return { vendor, architecture, device, description, isSoftware };
}

/** Request a device with the adapter's own limits and the optional features it has. */
export async function requestEngineDevice(gpu: GPU, opts: { powerPreference?: GPUPowerPreference } = {}): Promise<EngineDevice> {
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new AppError('ERR_WEBGPU_NO_ADAPTER', 'webgpu engine: requestAdapter() returned null', 503,
      'enable WebGPU (chrome://flags or --enable-unsafe-webgpu); in Node set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json');
  }
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const features = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  let device: GPUDevice;
  let adapterLimits = true;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures: features, label: 'engine' });
  } catch {
    // Some implementations reject their own maxima or a feature; defaults always work.
    adapterLimits = false;
    device = await adapter.requestDevice({ label: 'engine' });
  }
  return { device, adapter, info: adapterInfo(adapter), adapterLimits, features: adapterLimits ? features : [] };
}
