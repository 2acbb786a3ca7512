// Generative tasks through the inference engine: each prompt is completed greedily (temperature
// 0, so a run is reproducible) up to maxTokens or a stop string, and the completion, trimmed of
// surrounding whitespace, is scored against the references: exact match, token F1, ROUGE-L (per
// document, then the mean) and corpus BLEU (sacrebleu; the 'zh' tokenizer when the references
// are Chinese). All prompts are submitted at once; the engine batches them continuously. A prompt
// longer than the engine's context less maxTokens keeps its last tokens (left truncation, as
// lm-eval's generate_until).
import { PatentGPTError } from '../errors.js';
import type { Engine, EngineTokenizer } from '../infer/engine.js';
import { bleuTokenizerFor, corpusBleu, exactMatch, rougeL, tokenF1 } from './metrics.js';
import { collectRows, type GenerateDef } from './taskdef.js';
import type { SkippedRow } from './tasks.js';

export interface GenDoc {
  id: string;
  prompt: string;
  references: string[];
  category: string;
}

export interface GenTask {
  kind: 'generate';
  name: string;
  docs: GenDoc[];
  skipped: SkippedRow[];
  files: string[];
  maxTokens: number;
  stop: string[];
}

export interface GenMetrics {
  n: number;
  exact_match: number;
  f1: number;
  rouge_l: number;
  bleu: number;
}

export interface GenDocResult {
  id: string;
  category: string;
  completion: string;
  finishReason: string;
  exact_match: number;
  f1: number;
  rouge_l: number;
}

export interface GenTaskResult {
  kind: 'generate';
  task: string;
  options: { maxTokens: number; stop: string[]; limit: number | null; bleuTokenizer: string };
  metrics: GenMetrics;
  byCategory: Record<string, GenMetrics>;
  docs: GenDocResult[];
}

/** A generative task from a definition: prompt and reference templates over the rows of its files. */
export function loadGenTask(def: GenerateDef): GenTask {
  const { items, skipped } = collectRows(def, { prompt: def.prompt, reference: def.reference });
  const docs = items.map((it) => ({ id: it.id, prompt: it.values.prompt, references: [it.values.reference.trim()], category: it.category }));
  return { kind: 'generate', name: def.name, docs, skipped, files: def.files, maxTokens: def.maxTokens, stop: def.stop };
}

function aggregateGen(docs: readonly GenDocResult[], completions: readonly string[], refs: readonly string[][], tokenizer: 'zh' | '13a'): GenMetrics {
  const n = docs.length;
  const mean = (f: (d: GenDocResult) => number): number => (n === 0 ? NaN : docs.reduce((s, d) => s + f(d), 0) / n);
  return {
    n, exact_match: mean((d) => d.exact_match), f1: mean((d) => d.f1), rouge_l: mean((d) => d.rouge_l),
    bleu: n === 0 ? NaN : corpusBleu(completions, refs, tokenizer).score,
  };
}

export interface GenOptions {
  limit?: number;
  /** Add BOS in front of each prompt (default true, as the engine). */
  addBos?: boolean;
  /** Overrides the task's maxTokens. */
  maxTokens?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Generates a completion for every document and scores them. */
export async function evaluateGenerate(engine: Engine, tokenizer: EngineTokenizer & { vocabSize?: number }, task: GenTask, opts: GenOptions = {}): Promise<GenTaskResult> {
  const V = engine.model.config.vocabSize;
  if (tokenizer.vocabSize !== undefined && tokenizer.vocabSize < V)
    throw new PatentGPTError('E_ARGUMENT', `generation: the tokenizer has ${tokenizer.vocabSize} ids but the model ${V}: the model could generate ids the tokenizer cannot decode (use the model's own tokenizer)`);
  const maxTokens = opts.maxTokens ?? task.maxTokens;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 1 && maxTokens < engine.maxModelLen))
    throw new PatentGPTError('E_ARGUMENT', `maxTokens must be an integer in [1, ${engine.maxModelLen - 1}] (the context is ${engine.maxModelLen}), got ${maxTokens}`);
  const room = engine.maxModelLen - maxTokens;
  const docs = task.docs.slice(0, opts.limit ?? task.docs.length);
  let done = 0;
  const outs = await Promise.all(
    docs.map(async (doc) => {
      const ids = tokenizer.encode(doc.prompt, { bos: opts.addBos ?? true });
      const prompt = ids.length > room ? Array.from(ids).slice(ids.length - room) : ids;
      const r = await engine.complete(prompt, { maxTokens, stop: task.stop.length > 0 ? task.stop : undefined, temperature: 0, seed: 0 });
      opts.onProgress?.(++done, docs.length);
      return r;
    }),
  );
  const completions = outs.map((o) => o.text.trim());
  const refs = docs.map((d) => d.references);
  const bleuTok = bleuTokenizerFor(refs);
  const results: GenDocResult[] = docs.map((d, i) => ({
    id: d.id, category: d.category, completion: completions[i]!, finishReason: outs[i]!.finishReason,
    exact_match: exactMatch(completions[i]!, d.references), f1: tokenF1(completions[i]!, d.references), rouge_l: rougeL(completions[i]!, d.references),
  }));
  const byCategory: Record<string, GenMetrics> = {};
  for (const c of [...new Set(docs.map((d) => d.category))].sort()) {
    const idx = docs.map((d, i) => (d.category === c ? i : -1)).filter((i) => i >= 0);
    byCategory[c] = aggregateGen(idx.map((i) => results[i]!), idx.map((i) => completions[i]!), idx.map((i) => refs[i]!), bleuTok);
  }
  return {
    kind: 'generate', task: task.name, options: { maxTokens, stop: task.stop, limit: opts.limit ?? null, bleuTokenizer: bleuTok },
    metrics: aggregateGen(results, completions, refs, bleuTok), byCategory, docs: results,
  };
}
