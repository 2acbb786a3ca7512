// Perplexity of held-out documents, per category, as lm-evaluation-harness's loglikelihood_rolling:
// a document is encoded without BOS and cut into windows of at most maxSeqLen predicted tokens;
// the first window is conditioned on BOS alone, each later one on the maxSeqLen tokens before its
// end (so every token is predicted once, and the last window has a full context). Perplexity is
// token-weighted: exp(-sum of log-likelihoods / number of tokens) over all the documents of a
// category (not a mean of per-document perplexities). bits_per_byte (-sum / (ln 2 * UTF-8 bytes))
// does not depend on the tokenizer, so models with different vocabularies compare.
import { PatentGPTError } from '../errors.js';
import type { Scorer, TokenizedRequest } from './loglik.js';
import { collectRows, type PerplexityDef } from './taskdef.js';
import type { SkippedRow } from './tasks.js';

export interface PplDoc {
  id: string;
  text: string;
  category: string;
}

export interface PplTask {
  kind: 'perplexity';
  name: string;
  docs: PplDoc[];
  skipped: SkippedRow[];
  files: string[];
}

export interface PplMetrics {
  /** Documents. */
  n: number;
  tokens: number;
  bytes: number;
  loglik: number;
  perplexity: number;
  bits_per_byte: number;
}

export interface PplTaskResult {
  kind: 'perplexity';
  task: string;
  options: { limit: number | null };
  metrics: PplMetrics;
  byCategory: Record<string, PplMetrics>;
  docs: { id: string; category: string; tokens: number; loglik: number }[];
}

export function loadPplTask(def: PerplexityDef): PplTask {
  const { items, skipped } = collectRows(def, { text: def.text });
  return { kind: 'perplexity', name: def.name, docs: items.map((it) => ({ id: it.id, text: it.values.text, category: it.category })), skipped, files: def.files };
}

/** lm-eval's get_rolling_token_windows(tokens, bos, maxLen, 1) + make_disjoint_window, as (context, continuation) pairs. */
export function rollingWindows(tokens: Int32Array, bosId: number, maxLen: number): TokenizedRequest[] {
  if (bosId < 0) throw new PatentGPTError('E_ARGUMENT', 'perplexity: the tokenizer has no BOS token to condition the first window on');
  const out: TokenizedRequest[] = [];
  if (tokens.length === 0) return out;
  const first = Math.min(maxLen, tokens.length);
  out.push({ context: Int32Array.of(bosId), continuation: tokens.slice(0, first) });
  for (let predicted = first; predicted < tokens.length; ) {
    const len = Math.min(tokens.length - predicted, maxLen);
    const end = predicted + len;
    out.push({ context: tokens.slice(Math.max(0, end - maxLen - 1), end - len), continuation: tokens.slice(end - len, end) });
    predicted = end;
  }
  return out;
}

function pplOf(n: number, tokens: number, bytes: number, loglik: number): PplMetrics {
  return { n, tokens, bytes, loglik, perplexity: tokens === 0 ? NaN : Math.exp(-loglik / tokens), bits_per_byte: bytes === 0 ? NaN : -loglik / (Math.LN2 * bytes) };
}

export function evaluatePerplexity(scorer: Scorer, task: PplTask, opts: { limit?: number; onProgress?: (done: number, total: number) => void } = {}): PplTaskResult {
  const docs = task.docs.slice(0, opts.limit ?? task.docs.length);
  const reqs: TokenizedRequest[] = [];
  const owner: number[] = [];
  const nTokens: number[] = [];
  docs.forEach((d, i) => {
    const ids = Int32Array.from(scorer.tokenizer.encode(d.text));
    nTokens.push(ids.length);
    for (const w of rollingWindows(ids, scorer.tokenizer.bosId, scorer.model.config.maxSeqLen)) {
      reqs.push(w);
      owner.push(i);
    }
  });
  const ll = scorer.loglikelihoodTokens(reqs, (done) => opts.onProgress?.(done, reqs.length));
  const docLl = new Array<number>(docs.length).fill(0);
  ll.forEach((r, k) => (docLl[owner[k]!]! += r.logprob));
  const bytes = docs.map((d) => Buffer.byteLength(d.text, 'utf8'));
  const sum = (idx: number[]): PplMetrics =>
    pplOf(idx.length, idx.reduce((s, i) => s + nTokens[i]!, 0), idx.reduce((s, i) => s + bytes[i]!, 0), idx.reduce((s, i) => s + docLl[i]!, 0));
  const byCategory: Record<string, PplMetrics> = {};
  for (const c of [...new Set(docs.map((d) => d.category))].sort()) byCategory[c] = sum(docs.map((d, i) => (d.category === c ? i : -1)).filter((i) => i >= 0));
  return {
    kind: 'perplexity', task: task.name, options: { limit: opts.limit ?? null }, metrics: sum(docs.map((_, i) => i)), byCategory,
    docs: docs.map((d, i) => ({ id: d.id, category: d.category, tokens: nTokens[i]!, loglik: docLl[i]! })),
  };
}
