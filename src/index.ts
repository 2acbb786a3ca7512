// patentgpt: the PatentGPT pipeline from TypeScript over a native C++/CUDA core.
export * from './tensor/index.js';
export { PatentGPTError, type ErrorCode } from './errors.js';
export * from './nn/index.js';
export * from './models/index.js';
export * from './tokenizer/index.js';
export * from './infer/index.js';
export { exportGguf, type GgufOptions } from './export/gguf.js';
export * from './eval/index.js';
