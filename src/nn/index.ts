// Modules: parameter trees named as in Hugging Face, over the fused ops of src/tensor.
export { Module } from './module.js';
export {
  Linear, Embedding, RMSNorm, Attention, SwiGLUMLP, Block, ModuleList, zeroInit,
  type ParamInit, type FeedForward, type AttentionContext, type AttentionShape,
} from './layers.js';
