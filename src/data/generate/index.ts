// Rewriting and synthesis: a generator interface, its backends, the prompt templates and the runner.
export {
  GenerateError, validateMessages, validateParams,
  type ChatMessage, type FailureReason, type GenerateRequest, type GenerateResult, type GenerationParams, type Generator, type Usage,
} from './types.js';
export {
  OpenAIHttpGenerator, Semaphore, TokenBucket, estimateTokens, messagesAsPrompt, retryAfterMs,
  type HttpGeneratorOptions, type HttpStats,
} from './http.js';
export { OfflineGenerator, extractiveReply, type OfflineGeneratorOptions } from './offline.js';
export {
  TEMPLATES, TEMPLATE_NAMES, getTemplate, parsePairs, promptLang, sourceBlock, clip, firstSentences, cleanReply,
  type ParsedReply, type PromptLang, type ReplyFailure, type SynthOutput, type Template, type TemplateName, type TemplateOptions,
} from './templates.js';
export { synthesize, doneLogPath, type Provenance, type SynthOptions, type SynthProgress, type SynthRecord, type SynthReport } from './synth.js';
