// Evaluation: multiple choice by log-likelihood (lm-evaluation-harness semantics), task loaders, reports.
export { Scorer, encodePair, type EvalTokenizer, type LoglikRequest, type LoglikResult, type ScorerOptions, type TokenizedRequest } from './loglik.js';
export {
  evaluateMc, buildContext, candidates, fewShotExamples, renderQuestion, examScore, aggregate,
  type McOptions, type McTaskResult, type DocResult, type Metrics, type PromptStyle, type Candidate,
} from './mc.js';
export {
  loadTask, loadTaskFile, loadPaeCsv, loadMmluCsv, loadIpquizJson, loadMcJsonl, detectFormat, parseCsv, resolveAnswer,
  type McDoc, type McTask, type SkippedRow, type TaskFormat,
} from './tasks.js';
export { resolveTask, BUILTIN_TASKS, dataDir } from './registry.js';
export { formatTable, formatMarkdown, type EvalRun } from './report.js';
