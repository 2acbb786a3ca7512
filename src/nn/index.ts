// Modules: parameter trees named as in Hugging Face, over the fused ops of src/tensor.
export { Module } from './module.js';
export {
  Linear, Embedding, RMSNorm, Attention, SwiGLUMLP, Block, ModuleList, zeroInit,
  type ParamInit, type LinearAdapter, type FeedForward, type SwigluWeights, type DecodeLayerWeights, type BlockOptions, type AttentionShape,
} from './layers.js';
export {
  LoraAdapter, applyLora, mergeLora, unmergeLora, removeLora, loraParameters, loraLayers, namedLinears, matchesTarget, withAdaptersDisabled, type LoraOptions, type MergeOptions,
} from './lora.js';
export { ForwardRecorder, prefixContext, type ForwardContext } from './context.js';
export type {
  AttentionMetadata, PackedAttentionMetadata, PagedAttentionMetadata, PagedKvCache, FreshPrompts, CachedRows, RopeSegment, RopeSetting,
} from './metadata.js';
export { SparseMoE, ExpertMLP, loadBalancingLoss, routerZLoss, type SparseMoEOptions, type Routing } from './moe.js';
export { withDropoutRows, withDropoutRowSubset, type DropoutRows, type DropoutRowRun } from './dropout-rows.js';
