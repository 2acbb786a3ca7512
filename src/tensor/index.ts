// Public tensor API: Tensor, memory scopes, autograd, and the differentiable ops.
export { Tensor, numel, type Shape, type TensorOptions } from './tensor.js';
export { type DType, type Device, bytesPerElement } from './dtype.js';
export { scope, keep } from './scope.js';
export { noGrad, isGradEnabled, clearTape, tapeLength, backward, type BackwardOptions } from './autograd.js';
export { Rng } from './random.js';
export { runtimeInfo, setNumThreads, memoryStats, resetPeakMemory, releaseCachedMemory, measurePeakFlops, type RuntimeInfo } from './runtime.js';
export * from './ops/index.js';
export { checkDeviceAvailable } from './tensor.js';
