// Adapter and device acquisition. Asks for the adapter's OWN limits (the defaults cap buffers at
// 256 MiB and bindings at 128 MiB, far below what desktop GPUs allow: GPT-2's wte alone is 154 MB,
// a replica's parameter buffer 498 MB) and useful optional features. If that request fails (some
// drivers reject their own maxima), it retries with only the two buffer limits at the adapter's
// maxima, then with defaults. The device's granted limits are what `hello` reports, so the
// coordinator's planner (shared/memory: parameter buffer <= maxBufferSize, every tensor and
// activation <= the binding limit) promises only what this device can allocate.

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
  /** True if the device got the adapter's own buffer limits, false if it fell back to defaults. */
  adapterLimits: boolean;
  /** Which request succeeded: every wanted limit, the two buffer limits only, or the defaults. */
  limitsGranted: 'adapter' | 'buffers' | 'defaults';
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

/** The buffer limits that decide what a model's tensors may be (the planner checks both). */
const BUFFER_LIMITS = ['maxBufferSize', 'maxStorageBufferBindingSize'] as const;

export interface DeviceRequest {
  granted: EngineDevice['limitsGranted'];
  descriptor: GPUDeviceDescriptor;
}

/**
 * The device requests to try, in order: every wanted limit at the adapter's value with the optional
 * features it has; the two buffer limits alone; the defaults. A limit the adapter does not report is
 * left out.
 */
export function deviceRequests(adapterLimits: Record<string, number | undefined>, adapterFeatures: ReadonlySet<string>): DeviceRequest[] {
  const pick = (keys: readonly string[]) => {
    const out: Record<string, number> = {};
    for (const k of keys) {
      const v = adapterLimits[k];
      if (typeof v === 'number' && Number.isFinite(v) && v > 0) out[k] = v;
    }
    return out;
  };
  const features = WANTED_FEATURES.filter((f) => adapterFeatures.has(f)) as GPUFeatureName[];
  const all = pick(WANTED_LIMITS);
  const buffers = pick(BUFFER_LIMITS);
  const list: DeviceRequest[] = [{ granted: 'adapter', descriptor: { requiredLimits: all, requiredFeatures: features, label: 'engine' } }];
  if (Object.keys(buffers).length) list.push({ granted: 'buffers', descriptor: { requiredLimits: buffers, label: 'engine' } });
  list.push({ granted: 'defaults', descriptor: { label: 'engine' } });
  return list;
}

/** Request a device with the adapter's own limits and the optional features it has (see the header). */
export async function requestEngineDevice(gpu: GPU, opts: { powerPreference?: GPUPowerPreference } = {}): Promise<EngineDevice> {
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new AppError('ERR_WEBGPU_NO_ADAPTER', 'webgpu engine: requestAdapter() returned null', 503,
      'enable WebGPU (chrome://flags or --enable-unsafe-webgpu); in Node set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json');
  }
  const requests = deviceRequests(adapter.limits as unknown as Record<string, number>, adapter.features as unknown as ReadonlySet<string>);
  const errors: string[] = [];
  for (const r of requests) {
    try {
      const device = await adapter.requestDevice(r.descriptor);
      const features = (r.descriptor.requiredFeatures ?? []) as string[];
      return { device, adapter, info: adapterInfo(adapter), adapterLimits: r.granted !== 'defaults', limitsGranted: r.granted, features };
    } catch (e) {
      // Some implementations reject their own maxima or a feature; the next request asks for less.
      errors.push(`${r.granted}: ${(e as Error).message}`);
    }
  }
  throw new AppError('ERR_WEBGPU_NO_DEVICE', `webgpu engine: requestDevice failed (${errors.join('; ')})`, 503,
    'update the browser or GPU driver, or use --backend cpu');
}
