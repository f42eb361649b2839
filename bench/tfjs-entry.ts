// Entry of the tfjs bundle (see tfjs-bundle.ts): tfjs-core's ESM build with ALL its gradients
// registered (the Node CJS build of tfjs-core registers none, and its ESM files use
// extensionless imports Node cannot load), plus the WebGPU backend class.

export * from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
export { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
