// The differentiable ops, one file per op family (the same families as native/cpu; index-ops.ts
// runs on reduce.cpp).
export * from './elementwise.js';
export * from './reduce.js';
export * from './index-ops.js';
export * from './matmul.js';
export * from './embedding.js';
export * from './rmsnorm.js';
export * from './rope.js';
export * from './swiglu.js';
export * from './attention.js';
export * from './crossEntropy.js';
export * from './linearCrossEntropy.js';
export * from './optim.js';
export * from './paged.js';
export * from './decode.js';
export * from './rows.js';
export * from './moe.js';
