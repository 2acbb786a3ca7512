// patentgpt: the PatentGPT pipeline from TypeScript over a native C++/CUDA core.
export * from './tensor/index.js';
export { PatentGPTError, type ErrorCode, type NativeErrorCode } from './errors.js';
export * from './nn/index.js';
export * from './models/index.js';
export {
  ScoreHeadModel, LlamaForSequenceClassification, SEQUENCE_CLASSIFICATION_ARCHITECTURES, SCORE_INIT_STD, bradleyTerryLoss, pairStats, lastTokenRows,
  lastNonPadIndex, packSequences, unpadRows, rewardHFConfig, rewardFolderFiles, saveRewardModel, loadRewardModel, readRewardConfig, rewardModelFromCausalLM,
  initScoreHeadModel, type ScoreBatch, type ScoreHeadOptions, type PairLossOptions, type SaveRewardOptions, type RewardFolderConfig,
} from './models/reward.js';
export * from './tokenizer/index.js';
export * from './infer/index.js';
export { createServer, type ServerOptions, type ServeEngine } from './serve/index.js';
export { exportGguf, type GgufOptions } from './export/gguf.js';
export * from './eval/index.js';
export { Trainer, findResumePoint, type ResumeLookup, type TrainTask, type TaskLoss, type TrainerOptions, type TrainResult, type TrainBatchInfo } from './train/trainer.js';
export { estimateTrainingMemory, checkTrainingFits } from './train/memory.js';
export { pretrain, stageModelConfig, resolveModelConfig, loadInitialWeights, type PretrainOptions, type PretrainResult } from './train/pretrain.js';
export { sft, sftLoss, sftRenderer, llama2ByteRenderer, type SftOptions, type SftResult } from './train/stages/sft.js';
export { reward, rewardLoss, saveRewardAdapter, REWARD_FINAL_DIR, type RewardOptions, type RewardResult, type RewardLossBatch } from './train/stages/reward.js';
export type { RewardConfig, RewardObjective } from './train/config-reward.js';
export { ppo, type PpoOptions, type PpoResult } from './train/stages/ppo.js';
export { claimFormatReward, loadRewardFunction, type RewardFunction, type RewardFunctionSpec } from './train/ppo/rewards.js';
export { AdaptiveKLController, FixedKLController, type KlController } from './train/ppo/math.js';
export { dpo, dpoLoss, sequenceLogps, referenceLogps, type DpoOptions, type DpoResult, type PairLogps } from './train/stages/dpo.js';
export type { DpoConfig, DpoObjective } from './train/config-dpo.js';
export {
  readPreferencePairs, loadPreferenceData, PreferenceBatchStream, normalizePreference,
  type PreferencePair, type PreferenceExample, type PreferenceBatch, type PreferenceSource,
} from './data/preference/index.js';
export {
  loadStageConfig, validateStageConfig, configHash, totalSteps, tokensPerStep, stageSchedule, STAGE_KINDS,
  type StageConfig, type StageKind, type StageBase, type PretrainConfig, type SftConfig, type PpoConfig, type SftChatTemplate, type StageOptimizer, type StageParamGroup,
} from './train/config.js';
export {
  AdamW, SGD, createOptimizer, defaultDecayRule, type Optimizer, type OptimizerOptions, type OptimizerType, type ParamGroupRule, type ParamGroup,
  type AdamWOptions, type StepResult, type OptimizerState,
} from './train/optimizer.js';
export { CheckpointManager, Checkpoint, loadCheckpoint, type TrainState } from './train/checkpoint.js';
export { MetricsLog, readMetrics, perplexity, mfu, type MetricRecord, type StepMetrics, type MetricValue } from './train/metrics.js';
export { learningRate, type Schedule } from './train/schedule.js';
export { writeReport } from './train/plot.js';
export { Progress } from './train/progress.js';
