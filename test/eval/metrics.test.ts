// Generation metrics and Pearson's r against the values of sacrebleu, torchmetrics (rouge-score and
// SQuAD semantics) and scipy (test/eval/fixtures/metrics-golden.json, scripts/eval-metrics-fixture.py),
// and the extensions for Chinese that those references do not cover.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bleuTokenizerFor, corpusBleu, exactMatch, pearson, rougeL, rougeTokens, tokenF1, tokenize13a, tokenizeZh } from '../../src/index.js';
import { expectClose } from '../helpers.js';

type Case = [string, string[]];
interface Bleu { score: number; precisions: number[]; bp: number; sysLen: number; refLen: number }
const golden = JSON.parse(readFileSync(new URL('./fixtures/metrics-golden.json', import.meta.url), 'utf8')) as {
  tokenize: { text: string; '13a': string; zh: string }[];
  bleu: { en: Bleu & { cases: Case[] }; zh: Bleu & { cases: Case[] }; sentences: (Bleu & { case: Case })[] };
  rougeL: { prediction: string; references: string[]; f: number }[];
  squad: { prediction: string; references: string[]; exact_match: number; f1: number }[];
  pearson: { x: number[]; y: number[]; r: number };
};

function expectBleu(got: Bleu, want: Bleu, what: string): void {
  expectClose([got.score, got.bp, ...got.precisions], [want.score, want.bp, ...want.precisions], 1e-9, 1e-9, what);
  expect([got.sysLen, got.refLen], what).toEqual([want.sysLen, want.refLen]);
}

describe('BLEU as sacrebleu', () => {
  it('tokenizes as 13a and zh', () => {
    for (const t of golden.tokenize) {
      expect(tokenize13a(t.text), t.text).toBe(t['13a']);
      expect(tokenizeZh(t.text), t.text).toBe(t.zh);
    }
  });
  it('corpus BLEU on English (13a) and Chinese (zh), and on single sentences', () => {
    const en = golden.bleu.en;
    expectBleu(corpusBleu(en.cases.map((c) => c[0]), en.cases.map((c) => c[1])), en, 'en');
    const zh = golden.bleu.zh;
    expectBleu(corpusBleu(zh.cases.map((c) => c[0]), zh.cases.map((c) => c[1]), 'zh'), zh, 'zh');
    for (const s of golden.bleu.sentences) expectBleu(corpusBleu([s.case[0]], [s.case[1]]), s, JSON.stringify(s.case[0]));
    expect(bleuTokenizerFor(zh.cases.map((c) => c[1]))).toBe('zh');
    expect(bleuTokenizerFor(en.cases.map((c) => c[1]))).toBe('13a');
  });
  it('rejects mismatched lists', () => {
    expect(() => corpusBleu(['a'], [])).toThrow(expect.objectContaining({ code: 'E_ARGUMENT' }));
  });
});

describe('ROUGE-L as rouge-score, exact match and F1 as SQuAD', () => {
  it('ROUGE-L F1, best over the references', () => {
    expectClose(golden.rougeL.map((c) => rougeL(c.prediction, c.references)), golden.rougeL.map((c) => c.f), 1e-6, 0, 'rougeL');
  });
  it('exact match and token F1', () => {
    expect(golden.squad.map((c) => exactMatch(c.prediction, c.references))).toEqual(golden.squad.map((c) => c.exact_match));
    expectClose(golden.squad.map((c) => tokenF1(c.prediction, c.references)), golden.squad.map((c) => c.f1), 1e-6, 0, 'f1');
  });
  it('Chinese characters count as tokens (where rouge-score and SQuAD would see one word or nothing)', () => {
    expect(rougeTokens('权利要求 1 claims')).toEqual(['权', '利', '要', '求', '1', 'claims']);
    // LCS 二十年 (3) of 4 and 5 characters.
    expect(rougeL('期限二十年', ['二十年期'])).toBeCloseTo((2 * (3 / 5) * (3 / 4)) / (3 / 5 + 3 / 4), 12);
    expect(tokenF1('期限为二十年', ['二十年'])).toBeCloseTo((2 * 0.5 * 1) / 1.5, 12);
    expect(exactMatch('二十年。', ['二十年'])).toBe(0); // full-width punctuation is not ASCII: kept, as SQuAD
    expect(exactMatch('The 20 years', ['20 years.'])).toBe(1);
  });
});

describe('pearson', () => {
  it('equals scipy on real phrase-matching scores', () => {
    expect(pearson(golden.pearson.x, golden.pearson.y)).toBeCloseTo(golden.pearson.r, 12);
    expect(pearson([1, 2, 3], [2, 4, 6.5])).toBeGreaterThan(0.99);
    expect(pearson([1, 1], [1, 2])).toBeNaN();
  });
});
