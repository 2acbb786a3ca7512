// Tokenizers: SentencePiece-compatible BPE with LLaMA-2's exact semantics, and the byte-level one.
export { SentencePieceTokenizer, SPACE_SYMBOL, normalizeText, type EncodeOptions } from './sentencepiece.js';
export {
  PieceType,
  decodeModelProto,
  encodeModelProto,
  SENTENCEPIECE_MODEL_PROTO,
  type ModelType,
  type NormalizerSpec,
  type Piece,
  type SentencePieceModel,
  type TrainerSpec,
} from './model.js';
export { llama2Model, llama2Vocabulary, LLAMA2_VOCAB_SIZE } from './llama2.js';
export { decodeUtf8, encodeUtf8, utf8Length } from './utf8.js';
export { incrementalDecoder, type Detokenizable, type IncrementalDecoder } from './detokenize.js';
export { ByteTokenizer, BYTE_BOS_ID, BYTE_EOS_ID, BYTE_PAD_ID, BYTE_VOCAB_SIZE } from './byte.js';
export { trainBpe, type BpeTrainOptions, type BpeTrainResult, type BpeTrainStats, type TrainInput } from './train.js';
export { scriptOf } from './scripts.js';
export { mergeVocabularies, type MergeResult, type MergeStats } from './merge.js';
export { renderChat, type ChatMessage, type RenderChatOptions, type RenderedChat } from './chat.js';
export { exportHfTokenizer, hfMerges, hfTokenizerConfig, toHfTokenizerJson, type HfExportOptions, type HfTokenizerJson } from './hf.js';
export { isHeldOut, lineLanguage, tokenizerStats, type StatsLanguage, type TokenizerStatsRow } from './stats.js';
export { TokenizerPool, type TokenizerPoolBackend, type TokenizerPoolOptions } from './pool.js';
export {
  ChatTemplate,
  encodeTemplated,
  loadChatTemplate,
  type ApplyChatTemplateOptions,
  type ChatTemplateRenderer,
  type ChatTemplateSource,
  type TemplatedChat,
  type TemplateMessage,
} from './chat-template.js';
