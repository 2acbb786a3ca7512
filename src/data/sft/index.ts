// SFT data: records in the common layouts -> rendered examples with assistant-only labels ->
// split and mixture -> packed or padded rows. The SFT stage (src/train/stages) calls
// loadSftData, then packExamples + collateRows per batch.
export {
  checkConversation, detectLayout, normalizeRecord, SkipCounter, DEFAULT_FIELDS, ROLE_NAMES, SFT_LAYOUTS, SKIP_REASONS,
  type NormalizeOptions, type Normalized, type RecordSource, type Role, type SftFieldMap, type SftLayout, type Skip, type SkipReason,
} from './records.js';
export { arrayElementLines, readSftRecords, sftFileFormat, where, type RawItem, type SftFileFormat } from './read.js';
export {
  buildExample, chatRenderer, llama2ChatRenderer, IGNORE_INDEX,
  type ChatRenderer, type ExampleOptions, type ExampleResult, type RenderedConversation, type RenderFn, type SftExample,
} from './render.js';
export { isValidation, loadSftData, weightedIndices, type SftData, type SftDataOptions, type SftSource, type SftSourceStats } from './dataset.js';
export { collateRows, exampleTargets, packExamples, type PackOptions, type SftBatch, type SftBatching, type SftRow } from './pack.js';
export { SftBatchStream, sftEvalBatches, type SftStreamBatch, type SftStreamOptions, type SftStreamPosition } from './stream.js';
export { validateSftDataConfig, type SftDataConfig } from './config.js';
