// Scores of generated text against references, and Pearson correlation. Each follows a reference
// implementation exactly (checked against values those produced, test/eval/fixtures/metrics-golden.json,
// made by scripts/eval-metrics-fixture.py):
//
//  - exactMatch, tokenF1: the SQuAD v1.1 evaluation script (lowercase, ASCII punctuation and the
//    articles a/an/the removed, whitespace collapsed; F1 over the bag of tokens; the best over the
//    references). Extension: CJK characters count as one token each (a Chinese answer has no
//    spaces; SQuAD's split would make it one token), as CMRC 2018's mixed segmentation.
//  - rougeL: Google's rouge-score `RougeScorer(['rougeL'])` without stemming (lowercase, runs of
//    characters other than [a-z0-9] are separators; LCS precision, recall, F1; the best F1 over
//    the references). Extension: where rouge-score drops every non-ASCII character (a Chinese
//    text would score 0), CJK characters are tokens of their own and other letters stay in words.
//  - corpusBleu: sacrebleu's corpus_bleu with its defaults (tokenizer 13a, or 'zh' when asked,
//    mixed case, exp smoothing, brevity penalty from the closest reference length), 0..100.
import { PatentGPTError } from '../errors.js';

// ---- SQuAD exact match and token F1 ----

const ASCII_PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;
/** CJK ideographs, kana, hangul, and the full-width forms: one token per character where they appear. */
const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\u{20000}-\u{2ffff}]/u;
const CJK_G = new RegExp(CJK.source, 'gu');

/** SQuAD's normalize_answer. */
export function normalizeAnswer(s: string): string {
  return s.toLowerCase().replace(ASCII_PUNCT, '').replace(/\b(a|an|the)\b/g, ' ').split(/\s+/).filter((w) => w !== '').join(' ');
}

function answerTokens(s: string): string[] {
  return normalizeAnswer(s).replace(CJK_G, (c) => ` ${c} `).split(/\s+/).filter((w) => w !== '');
}

function maxOver(refs: readonly string[], f: (ref: string) => number): number {
  if (refs.length === 0) throw new PatentGPTError('E_ARGUMENT', 'a generated answer needs at least one reference');
  return Math.max(...refs.map(f));
}

/** 1 when the normalised prediction equals a normalised reference, else 0. */
export function exactMatch(prediction: string, references: readonly string[]): number {
  const p = answerTokens(prediction).join(' ');
  return maxOver(references, (r) => (answerTokens(r).join(' ') === p ? 1 : 0));
}

function f1Counts(common: number, nPred: number, nRef: number): number {
  if (common === 0) return 0;
  const precision = common / nPred;
  const recall = common / nRef;
  return (2 * precision * recall) / (precision + recall);
}

function bagOverlap(a: readonly string[], b: readonly string[]): number {
  const counts = new Map<string, number>();
  for (const t of b) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of a) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      common++;
      counts.set(t, c - 1);
    }
  }
  return common;
}

/** SQuAD token F1 (the best over the references). */
export function tokenF1(prediction: string, references: readonly string[]): number {
  const p = answerTokens(prediction);
  return maxOver(references, (ref) => {
    const r = answerTokens(ref);
    if (p.length === 0 || r.length === 0) return p.length === r.length ? 1 : 0; // SQuAD 2.0: both empty = 1
    return f1Counts(bagOverlap(p, r), p.length, r.length);
  });
}

// ---- ROUGE-L ----

/** rouge-score's tokenizer (no stemming), with CJK characters kept as tokens. */
export function rougeTokens(s: string): string[] {
  return s.toLowerCase().replace(CJK_G, (c) => ` ${c} `).split(/[^\p{L}\p{N}]+/u).filter((w) => w !== '');
}

/** Length of the longest common subsequence (two rows of the DP table). */
function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

/** ROUGE-L F1 of a prediction (the best over the references). */
export function rougeL(prediction: string, references: readonly string[]): number {
  const p = rougeTokens(prediction);
  return maxOver(references, (ref) => {
    const r = rougeTokens(ref);
    if (p.length === 0 || r.length === 0) return 0;
    return f1Counts(lcsLength(p, r), p.length, r.length);
  });
}

// ---- BLEU (sacrebleu) ----

const BLEU_RULES: [RegExp, string][] = [
  [/([{-~[-` -&(-+:-@/])/g, ' $1 '], // punctuation and symbols
  [/([^0-9])([.,])/g, '$1 $2 '], // period and comma unless preceded by a digit
  [/([.,])([^0-9])/g, ' $1 $2'], // period and comma unless followed by a digit
  [/([0-9])(-)/g, '$1 $2 '], // dash after a digit
];

function regexpTokenize(line: string): string {
  for (const [re, to] of BLEU_RULES) line = line.replace(re, to);
  return line.split(/\s+/).filter((w) => w !== '').join(' ');
}

/** sacrebleu's 13a tokenizer (mteval-v13a). */
export function tokenize13a(line: string): string {
  line = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (line.includes('&')) line = line.replaceAll('&quot;', '"').replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  return regexpTokenize(` ${line} `);
}

// sacrebleu's _UCODE_RANGES for 'zh', compared as Python compares one character with these strings.
// Two of its bounds are written '\u20000' and '\u2f800' (meant as code points above U+FFFF), which
// Python reads as two characters: those ranges are in effect U+2001..U+2A6D and U+2F81..U+2FA1.
const ZH_RANGES: [number, number][] = [
  [0x3400, 0x4db5], [0x4e00, 0x9fa5], [0x9fa6, 0x9fbb], [0xf900, 0xfa2d], [0xfa30, 0xfa6a], [0xfa70, 0xfad9],
  [0x2001, 0x2a6d], [0x2f81, 0x2fa1], [0xff00, 0xffef], [0x2e80, 0x2eff], [0x3000, 0x303f], [0x31c0, 0x31ef],
  [0x2f00, 0x2fdf], [0x2ff0, 0x2fff], [0x3100, 0x312f], [0x31a0, 0x31bf], [0xfe10, 0xfe1f], [0xfe30, 0xfe4f],
  [0x2600, 0x26ff], [0x2700, 0x27bf], [0x3200, 0x32ff], [0x3300, 0x33ff],
];

function isZhChar(ch: string): boolean {
  const c = ch.codePointAt(0)!;
  if (c > 0xffff) return false; // no range above: see ZH_RANGES
  return ZH_RANGES.some(([a, b]) => c >= a && c <= b);
}

/** sacrebleu's 'zh' tokenizer: Chinese characters split apart, the rest as 13a. */
export function tokenizeZh(line: string): string {
  let out = '';
  for (const ch of line.trim()) out += isZhChar(ch) ? ` ${ch} ` : ch;
  return regexpTokenize(out);
}

export type BleuTokenizer = '13a' | 'zh';

export interface BleuScore {
  score: number;
  precisions: number[];
  bp: number;
  sysLen: number;
  refLen: number;
}

function ngramCounts(tokens: readonly string[], maxOrder: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++)
    for (let i = 0; i + n <= tokens.length; i++) {
      const k = `${n}\u0001${tokens.slice(i, i + n).join('\u0001')}`;
      m.set(k, (m.get(k) ?? 0) + 1);
    }
  return m;
}

/** sacrebleu corpus_bleu(hyps, [refs...]): refs[i] holds the references of hyps[i]. */
export function corpusBleu(hyps: readonly string[], refs: readonly (readonly string[])[], tokenizer: BleuTokenizer = '13a'): BleuScore {
  if (hyps.length !== refs.length) throw new PatentGPTError('E_ARGUMENT', `corpusBleu: ${hyps.length} hypotheses but ${refs.length} reference lists`);
  const tok = tokenizer === 'zh' ? tokenizeZh : tokenize13a;
  const split = (s: string): string[] => tok(s.trimEnd()).split(' ').filter((w) => w !== '');
  const N = 4;
  const correct = new Array<number>(N).fill(0);
  const total = new Array<number>(N).fill(0);
  let sysLen = 0;
  let refLen = 0;
  hyps.forEach((h, i) => {
    const refNgrams = new Map<string, number>();
    const refLens: number[] = [];
    for (const r of refs[i]!) {
      const rt = split(r);
      refLens.push(rt.length);
      for (const [k, c] of ngramCounts(rt, N)) refNgrams.set(k, Math.max(refNgrams.get(k) ?? 0, c));
    }
    const ht = split(h);
    // Closest reference length; ties go to the shorter.
    let closest = -1;
    let diff = -1;
    for (const L of refLens) {
      const d = Math.abs(ht.length - L);
      if (diff < 0 || d < diff || (d === diff && L < closest)) {
        diff = d;
        closest = L;
      }
    }
    sysLen += ht.length;
    refLen += closest;
    for (const [k, c] of ngramCounts(ht, N)) {
      const n = Number(k.slice(0, k.indexOf('\u0001'))) - 1;
      total[n]! += c;
      correct[n]! += Math.min(c, refNgrams.get(k) ?? 0);
    }
  });
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = new Array<number>(N).fill(0);
  if (!correct.some((c) => c > 0)) return { score: 0, precisions, bp, sysLen, refLen };
  let smooth = 1;
  for (let n = 0; n < N; n++) {
    if (total[n] === 0) break;
    if (correct[n] === 0) {
      smooth *= 2;
      precisions[n] = 100 / (smooth * total[n]!);
    } else precisions[n] = (100 * correct[n]!) / total[n]!;
  }
  const logp = (p: number): number => (p === 0 ? -9999999999 : Math.log(p)); // sacrebleu's my_log
  const score = bp * Math.exp(precisions.reduce((s, p) => s + logp(p), 0) / N);
  return { score, precisions, bp, sysLen, refLen };
}

/** Tokenizer for BLEU: 'zh' when the references hold Chinese characters (sacrebleu's advice for Chinese), else 13a. */
export function bleuTokenizerFor(refs: readonly (readonly string[])[]): BleuTokenizer {
  return refs.some((rs) => rs.some((r) => /[\u4e00-\u9fff]/.test(r))) ? 'zh' : '13a';
}

// ---- correlation ----

/** Pearson's r (NaN when either side is constant or there are fewer than 2 pairs). */
export function pearson(x: readonly number[], y: readonly number[]): number {
  if (x.length !== y.length) throw new PatentGPTError('E_ARGUMENT', `pearson: ${x.length} vs ${y.length} values`);
  const n = x.length;
  if (n < 2) return NaN;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy);
}
