// The differentiable ops, one file per op family (the same families as native/cpu).
export * from './elementwise.js';
export * from './attention.js';
