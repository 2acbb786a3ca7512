// Evaluation: multiple choice by log-likelihood (lm-evaluation-harness semantics), generation,
// perplexity, phrase matching, task loaders, reports.
export { Scorer, encodePair, activationBytesPerToken, type EvalTokenizer, type LoglikRequest, type LoglikResult, type ScorerOptions, type TokenizedRequest } from './loglik.js';
export {
  evaluateMc, buildContext, candidates, fewShotExamples, renderQuestion, examScore, aggregate, checkTemplate,
  type McOptions, type McPrompt, type McTaskResult, type DocResult, type Metrics, type PromptStyle, type Candidate,
} from './mc.js';
export {
  loadTask, loadTaskFile, loadPaeCsv, loadMmluCsv, loadIpquizJson, loadMcJsonl, detectFormat, parseCsv, resolveAnswer,
  type McDoc, type McTask, type SkippedRow, type TaskFormat,
} from './tasks.js';
export { resolveTask, BUILTIN_TASKS, dataDir, type AnyTask } from './registry.js';
export { exactMatch, tokenF1, rougeL, rougeTokens, corpusBleu, tokenize13a, tokenizeZh, bleuTokenizerFor, normalizeAnswer, pearson, type BleuScore, type BleuTokenizer } from './metrics.js';
export { evaluateGenerate, loadGenTask, type GenDoc, type GenTask, type GenTaskResult, type GenMetrics, type GenDocResult, type GenOptions } from './gen.js';
export { evaluatePerplexity, loadPplTask, rollingWindows, type PplTask, type PplTaskResult, type PplMetrics, type PplDoc } from './perplexity.js';
export { evaluatePhraseMatching, loadPhraseTask, phrasePrompts, type PhraseTask, type PhraseTaskResult, type PhraseMetrics, type PhrasePair } from './phrase.js';
export { loadTaskDef, parseTaskDef, readRows, fillTemplate, type TaskDef, type GenerateDef, type PerplexityDef, type PhraseMatchingDef, type MultipleChoiceDef } from './taskdef.js';
export { loadLmEvalYaml } from './lmeval-yaml.js';
export { renderJinja } from './jinja.js';
export { formatTable, formatMarkdown, type EvalRun, type TaskResult } from './report.js';
