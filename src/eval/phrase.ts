// Patent phrase matching (the US Patent Phrase-to-Phrase Matching data, a stand-in for MoZIP's
// PatentMatch): each pair (anchor, target, CPC context) gets a model score, and the task reports
// Pearson's r between the model scores and the human similarity scores, overall and per CPC section.
//
// Model score: the pointwise mutual information of target and anchor under the model, per target
// token, within the pair's CPC class:
//   pmi = [log p(target | "Patent class C.\nPhrase: A\nSimilar phrase:") - log p(target | "Patent class C.\nSimilar phrase:")] / tokens(target)
// i.e. how much reading the anchor raises the likelihood of the target. Subtracting the
// unconditioned term removes the target's own frequency (a common phrase is likely after any
// anchor), which raw log-likelihood would reward; dividing by the length keeps long targets from
// dominating. It needs nothing but the language model, as the other log-likelihood tasks.
import { PatentGPTError } from '../errors.js';
import type { Scorer } from './loglik.js';
import { pearson } from './metrics.js';
import { collectRows, type PhraseMatchingDef } from './taskdef.js';
import type { SkippedRow } from './tasks.js';

export interface PhrasePair {
  id: string;
  anchor: string;
  target: string;
  context: string;
  score: number;
  category: string;
}

export interface PhraseTask {
  kind: 'phrase-matching';
  name: string;
  docs: PhrasePair[];
  skipped: SkippedRow[];
  files: string[];
}

export interface PhraseMetrics {
  n: number;
  pearson: number;
}

export interface PhraseTaskResult {
  kind: 'phrase-matching';
  task: string;
  options: { limit: number | null; score: 'pmi-per-token' };
  metrics: PhraseMetrics;
  byCategory: Record<string, PhraseMetrics>;
  docs: { id: string; category: string; gold: number; model: number }[];
}

/** Phrase pairs from a definition; the category defaults to the CPC section (the context's first letter). */
export function loadPhraseTask(def: PhraseMatchingDef): PhraseTask {
  const { items, skipped } = collectRows(def, { anchor: def.anchor, target: def.target, context: def.context, score: def.score });
  const docs: PhrasePair[] = [];
  for (const it of items) {
    const score = Number(it.values.score);
    if (!Number.isFinite(score)) {
      skipped.push({ file: it.file, row: it.row, reason: 'bad-score', detail: `score ${JSON.stringify(it.values.score)} is not a number` });
      continue;
    }
    const context = it.values.context.trim();
    docs.push({ id: it.id, anchor: it.values.anchor.trim(), target: it.values.target.trim(), context, score, category: def.category ? it.category : context.charAt(0) });
  }
  return { kind: 'phrase-matching', name: def.name, docs, skipped, files: def.files };
}

export function phrasePrompts(p: Pick<PhrasePair, 'anchor' | 'context'>): { conditioned: string; unconditioned: string } {
  return { conditioned: `Patent class ${p.context}.\nPhrase: ${p.anchor}\nSimilar phrase:`, unconditioned: `Patent class ${p.context}.\nSimilar phrase:` };
}

export function evaluatePhraseMatching(scorer: Scorer, task: PhraseTask, opts: { limit?: number; onProgress?: (done: number, total: number) => void } = {}): PhraseTaskResult {
  const docs = task.docs.slice(0, opts.limit ?? task.docs.length);
  const reqs = docs.flatMap((d) => {
    const p = phrasePrompts(d);
    return [{ context: p.conditioned, continuation: ` ${d.target}` }, { context: p.unconditioned, continuation: ` ${d.target}` }];
  });
  const ll = scorer.loglikelihood(reqs, (done) => opts.onProgress?.(done, reqs.length));
  const model = docs.map((_, i) => {
    const c = ll[2 * i]!;
    if (c.nTokens === 0) throw new PatentGPTError('E_INTERNAL', `phrase pair ${docs[i]!.id}: the target has no tokens`);
    return (c.logprob - ll[2 * i + 1]!.logprob) / c.nTokens;
  });
  const metricsOf = (idx: number[]): PhraseMetrics => ({ n: idx.length, pearson: pearson(idx.map((i) => model[i]!), idx.map((i) => docs[i]!.score)) });
  const byCategory: Record<string, PhraseMetrics> = {};
  for (const c of [...new Set(docs.map((d) => d.category))].sort()) byCategory[c] = metricsOf(docs.map((d, i) => (d.category === c ? i : -1)).filter((i) => i >= 0));
  return {
    kind: 'phrase-matching', task: task.name, options: { limit: opts.limit ?? null, score: 'pmi-per-token' },
    metrics: metricsOf(docs.map((_, i) => i)), byCategory,
    docs: docs.map((d, i) => ({ id: d.id, category: d.category, gold: d.score, model: model[i]! })),
  };
}
