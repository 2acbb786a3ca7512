// The pretrain stage's public entry (src/train/stages/pretrain.ts), with the stage scaffolding it
// used to hold (now shared by every stage in stages/common.ts), for existing importers.
export { pretrain, type PretrainOptions, type PretrainResult } from './stages/pretrain.js';
export { loadInitialWeights, resolveModelConfig, stageModelConfig, stageTokenizer } from './stages/common.js';
export { sft, sftLoss, sftRenderer, llama2ByteRenderer, type SftOptions, type SftResult } from './stages/sft.js';
