// Multiple choice by log-likelihood, as lm-evaluation-harness's output_type: multiple_choice.
//
// Each candidate answer is a continuation of the prompt (target_delimiter " " in front), scored
// by Scorer.loglikelihood. acc: the candidate with the highest log-likelihood is the gold one.
// acc_norm: the same after dividing each log-likelihood by the candidate's length in characters
// (Unicode code points, Python's len(choice) without the delimiter, as lm-eval's
// process_results for multiple_choice).
//
// Prompt styles:
//  - 'letters' (MMLU / C-Eval): the question, the options as "A. text" lines, "Answer:"; the
//    candidates are the letters " A", " B", ... For multi-answer questions the candidates are all
//    non-empty letter sets " A", " AB", ..., " ABCD" (letters in order) followed by "\n", so a
//    prediction is a set. The terminator matters: without it " A" is a prefix of " AB" and its
//    log-likelihood is never lower, so a set could never beat its own subsets. Few-shot examples
//    end their answer with "\n\n", so the model sees where an answer ends.
//  - 'cloze': "Question: q\nAnswer:" and the choice texts as candidates (single-answer questions;
//    multi-answer questions fall back to 'letters', since a set of texts has no natural string).
//
// A template (`--template`, a task's `prompt`) replaces the style's question text: its {question},
// {options} (the "A. text" lines), {A}..{Z} (one choice's text), {category} and {id} are filled
// from the question, so a task's own prompt ("问题：{question}\n{options}\n答案：") is reproduced;
// the style still picks the candidates. The candidate follows the prompt after `targetDelimiter`
// (lm-eval's target_delimiter, default " "), few-shot examples end with `fewshotDelimiter`
// (default "\n\n").
//
// Multi-answer questions score all-or-nothing (acc, acc_norm: the predicted set equals the gold
// set). `partialCredit` adds the exam rule to `score`: a non-empty predicted set that is a proper
// subset of the gold set earns that fraction (0.5 is the common "少选得一半" rule; the patent agent
// exam itself gives 0, the default), any wrong letter earns 0.
//
// Few-shot: K examples drawn, without replacement, from the other questions of the same category
// (the whole task when the category has fewer than K others), by an RNG seeded from (seed,
// question id): the prompt of a question does not depend on --limit or on the order of the run.
import { PatentGPTError } from '../errors.js';
import { Rng } from '../tensor/index.js';
import type { Scorer } from './loglik.js';
import { LETTERS, type McDoc, type McTask } from './tasks.js';

export type PromptStyle = 'letters' | 'cloze';

/** How a task asks its questions; McOptions override it field by field. */
export interface McPrompt {
  style?: PromptStyle;
  /** The question's text with {field}s (see the header); default: the style's own. */
  template?: string;
  targetDelimiter?: string;
  fewshotDelimiter?: string;
  description?: string;
}

export interface McOptions extends McPrompt {
  shots?: number;
  seed?: number;
  /** Fraction of credit for a correct proper subset on multi-answer questions (default 0). */
  partialCredit?: number;
  /** Score only the first N questions (lm-eval --limit). */
  limit?: number;
  /** Questions per scorer call (default 256): what is held at once. */
  chunkDocs?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface Candidate {
  /** Continuation without the delimiter (multi-answer sets end with the "\n" terminator). */
  text: string;
  /** The answer set it stands for. */
  answer: number[];
}

export interface DocResult {
  id: string;
  category: string;
  multi: boolean;
  gold: number[];
  candidates: string[];
  loglik: number[];
  pred: number[];
  predNorm: number[];
  acc: number;
  accNorm: number;
  score: number;
}

export interface Metrics {
  n: number;
  acc: number;
  acc_stderr: number;
  acc_norm: number;
  acc_norm_stderr: number;
  /** Mean exam score (acc with partial credit on multi-answer questions). */
  score: number;
}

export interface McTaskResult {
  task: string;
  options: {
    shots: number; seed: number; style: PromptStyle; partialCredit: number; limit: number | null;
    template: string | null; targetDelimiter: string; fewshotDelimiter: string;
  };
  metrics: Metrics;
  byCategory: Record<string, Metrics>;
  docs: DocResult[];
}

const TEMPLATE_FIELD = /\{([A-Za-z_][\w-]*)\}/g;
const TEMPLATE_FIELDS = ['question', 'options', 'category', 'id'];

/** Throws (naming the field) when a template uses a field no question has. */
export function checkTemplate(template: string): void {
  for (const [, name] of template.matchAll(TEMPLATE_FIELD))
    if (!TEMPLATE_FIELDS.includes(name!) && !/^[A-Z]$/.test(name!))
      throw new PatentGPTError('E_CONFIG', `template field {${name}} is unknown: use {question}, {options}, {A}..{Z}, {category} or {id}`);
}

function fillQuestion(template: string, doc: McDoc): string {
  return template.replace(TEMPLATE_FIELD, (m, name: string) => {
    if (name === 'question') return doc.question;
    if (name === 'options') return doc.choices.map((c, i) => `${LETTERS[i]}. ${c}`).join('\n');
    if (name === 'category') return doc.category;
    if (name === 'id') return doc.id;
    if (/^[A-Z]$/.test(name)) return doc.choices[LETTERS.indexOf(name)] ?? '';
    return m;
  });
}

export function renderQuestion(doc: McDoc, style: PromptStyle, template?: string): string {
  if (template !== undefined) return fillQuestion(template, doc);
  if (style === 'cloze' && !doc.multi) return `Question: ${doc.question}\nAnswer:`;
  return `${doc.question}\n${doc.choices.map((c, i) => `${LETTERS[i]}. ${c}`).join('\n')}\nAnswer:`;
}

export function candidates(doc: McDoc, style: PromptStyle): Candidate[] {
  if (style === 'cloze' && !doc.multi) return doc.choices.map((c, i) => ({ text: c, answer: [i] }));
  const n = doc.choices.length;
  if (!doc.multi) return doc.choices.map((_, i) => ({ text: LETTERS[i]!, answer: [i] }));
  if (n > 10) throw new PatentGPTError('E_UNSUPPORTED', `question ${doc.id}: multi-answer with ${n} choices (at most 10: every subset is a candidate)`);
  const out: Candidate[] = [];
  for (let mask = 1; mask < 1 << n; mask++) {
    const answer: number[] = [];
    for (let i = 0; i < n; i++) if (mask & (1 << i)) answer.push(i);
    out.push({ text: answer.map((i) => LETTERS[i]).join('') + '\n', answer });
  }
  // Singles first, then pairs, ...: a stable, readable order (ties break to the smaller set).
  return out.sort((a, b) => a.answer.length - b.answer.length || a.text.localeCompare(b.text));
}

function goldText(doc: McDoc, style: PromptStyle): string {
  if (style === 'cloze' && !doc.multi) return doc.choices[doc.answer[0]!]!;
  return doc.answer.map((i) => LETTERS[i]).join('');
}

function hashId(seed: number, id: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The K few-shot examples of docs[index], seeded. */
export function fewShotExamples(docs: readonly McDoc[], index: number, k: number, seed: number): McDoc[] {
  if (k <= 0) return [];
  const doc = docs[index]!;
  const same = docs.filter((d, j) => j !== index && d.category === doc.category);
  const pool = same.length >= k ? same : docs.filter((_, j) => j !== index);
  const rng = new Rng(hashId(seed, doc.id));
  const idx = pool.map((_, j) => j);
  const m = Math.min(k, idx.length);
  for (let j = 0; j < m; j++) {
    const r = j + Math.floor(rng.uniform() * (idx.length - j));
    [idx[j], idx[r]] = [idx[r]!, idx[j]!];
  }
  return idx.slice(0, m).map((j) => pool[j]!);
}

export function buildContext(
  docs: readonly McDoc[], index: number,
  opts: { shots: number; seed: number; style: PromptStyle; description?: string; template?: string; targetDelimiter?: string; fewshotDelimiter?: string },
): string {
  const doc = docs[index]!;
  const desc = doc.description ?? (opts.description ? opts.description.replaceAll('{category}', doc.category) : '');
  const td = opts.targetDelimiter ?? ' ';
  const fd = opts.fewshotDelimiter ?? '\n\n';
  const shots = fewShotExamples(docs, index, opts.shots, opts.seed)
    .map((d) => `${renderQuestion(d, opts.style, opts.template)}${td}${goldText(d, opts.style)}${fd}`)
    .join('');
  return desc + shots + renderQuestion(doc, opts.style, opts.template);
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}

const sameSet = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

export function examScore(pred: readonly number[], gold: readonly number[], partialCredit: number): number {
  if (sameSet(pred, gold)) return 1;
  if (partialCredit > 0 && pred.length > 0 && pred.length < gold.length && pred.every((p) => gold.includes(p))) return partialCredit;
  return 0;
}

export function aggregate(docs: readonly DocResult[]): Metrics {
  const n = docs.length;
  const mean = (f: (d: DocResult) => number): number => (n === 0 ? NaN : docs.reduce((s, d) => s + f(d), 0) / n);
  // lm-eval's mean_stderr: sample standard deviation / sqrt(n).
  const stderr = (f: (d: DocResult) => number, mu: number): number =>
    n < 2 ? NaN : Math.sqrt(docs.reduce((s, d) => s + (f(d) - mu) ** 2, 0) / (n - 1) / n);
  const acc = mean((d) => d.acc);
  const accNorm = mean((d) => d.accNorm);
  return { n, acc, acc_stderr: stderr((d) => d.acc, acc), acc_norm: accNorm, acc_norm_stderr: stderr((d) => d.accNorm, accNorm), score: mean((d) => d.score) };
}

/** Scores a multiple-choice task; all candidates of all questions go to the scorer at once. */
export function evaluateMc(scorer: Scorer, task: McTask, opts: McOptions = {}): McTaskResult {
  const shots = opts.shots ?? 0;
  const seed = opts.seed ?? 1234;
  const p = task.prompt ?? {};
  const style = opts.style ?? p.style ?? 'letters';
  const template = opts.template ?? p.template;
  const targetDelimiter = opts.targetDelimiter ?? p.targetDelimiter ?? ' ';
  const fewshotDelimiter = opts.fewshotDelimiter ?? p.fewshotDelimiter ?? '\n\n';
  const description = opts.description ?? p.description;
  if (template !== undefined) checkTemplate(template);
  const partialCredit = opts.partialCredit ?? 0;
  if (!(shots >= 0 && Number.isInteger(shots))) throw new PatentGPTError('E_ARGUMENT', `shots must be an integer >= 0, got ${shots}`);
  if (!(partialCredit >= 0 && partialCredit <= 1)) throw new PatentGPTError('E_ARGUMENT', `partialCredit must be in [0, 1], got ${partialCredit}`);
  const n = opts.limit !== undefined ? Math.min(opts.limit, task.docs.length) : task.docs.length;
  // Questions go to the scorer in chunks, so the requests, their token ids and the scorer's
  // bookkeeping live for one chunk at a time, however large the task.
  const chunk = opts.chunkDocs ?? 256;
  const counts: number[] = [];
  for (let i = 0; i < n; i++) counts.push(candidates(task.docs[i]!, style).length);
  const total = counts.reduce((a, b) => a + b, 0);
  const docs: DocResult[] = [];
  let before = 0;
  for (let start = 0; start < n; start += chunk) {
    const plan: { doc: McDoc; cands: Candidate[]; first: number }[] = [];
    const reqs: { context: string; continuation: string }[] = [];
    for (let i = start; i < Math.min(n, start + chunk); i++) {
      const doc = task.docs[i]!;
      const context = buildContext(task.docs, i, { shots, seed, style, description, template, targetDelimiter, fewshotDelimiter });
      const cands = candidates(doc, style);
      plan.push({ doc, cands, first: reqs.length });
      for (const c of cands) reqs.push({ context, continuation: `${targetDelimiter}${c.text}` });
    }
    const ll = scorer.loglikelihood(reqs, (done) => opts.onProgress?.(before + done, total));
    before += reqs.length;
    for (const { doc, cands, first } of plan) {
      const lls = cands.map((_, j) => ll[first + j]!.logprob);
      const norm = lls.map((v, j) => v / codePoints(cands[j]!.text));
      const pred = cands[argmax(lls)]!.answer;
      const predNorm = cands[argmax(norm)]!.answer;
      docs.push({
        id: doc.id, category: doc.category, multi: doc.multi, gold: doc.answer, candidates: cands.map((c) => c.text), loglik: lls,
        pred, predNorm, acc: sameSet(pred, doc.answer) ? 1 : 0, accNorm: sameSet(predNorm, doc.answer) ? 1 : 0,
        score: doc.multi ? examScore(pred, doc.answer, partialCredit) : sameSet(pred, doc.answer) ? 1 : 0,
      });
    }
  }
  const cats = new Map<string, DocResult[]>();
  for (const d of docs) (cats.get(d.category) ?? cats.set(d.category, []).get(d.category)!).push(d);
  const byCategory: Record<string, Metrics> = {};
  for (const [c, ds] of [...cats].sort((a, b) => a[0].localeCompare(b[0]))) byCategory[c] = aggregate(ds);
  return {
    task: task.name, options: { shots, seed, style, partialCredit, limit: opts.limit ?? null, template: template ?? null, targetDelimiter, fewshotDelimiter },
    metrics: aggregate(docs), byCategory, docs,
  };
}
