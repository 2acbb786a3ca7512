// Inference: paged KV cache, scheduler with continuous batching, sampling, generate().
export { BlockPool, BlockTable, blockHash, blocksForBudget, kvBytesPerToken, type BlockCopy, type BlockStats } from './blocks.js';
export { ModelRunner, type RunnerOptions, type StepItem } from './runner.js';
export { Sampler, validateSampling, logprobsOf, argmax, topIndices, type SamplingOptions, type TokenLogprob } from './sampler.js';
export {
  Engine, type Completion, type EngineOptions, type EngineStats, type EngineTokenizer, type FinishReason, type GenerateOptions, type GenerationDelta,
} from './engine.js';
export { ThreadedEngine } from './threaded.js';
export { EngineGenerator, chatPromptIds, type ChatTokenizer, type CompletionEngine, type EngineGeneratorOptions } from './generator.js';
export { QUANTIZED_GGUF, isQuantizedFolder, loadQuantized, quantizeModel } from './quantized.js';
