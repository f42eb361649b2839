// Node-only: Dawn's WebGPU through the npm package `webgpu`. The ONLY file that imports it, so the
// browser bundle never sees it. On a machine without a GPU set
// VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json to get SwiftShader.

import { create, globals } from 'webgpu';

let cached: GPU | undefined;

/** A GPU object (navigator.gpu equivalent) for Node; also installs the WebGPU globals (GPUBufferUsage, ...). */
export function nodeGpu(dawnOptions: string[] = []): GPU {
  if (cached) return cached;
  Object.assign(globalThis, globals);
  cached = create(dawnOptions) as unknown as GPU;
  return cached;
}
