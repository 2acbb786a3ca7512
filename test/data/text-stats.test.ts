// The native filter statistics (native/cpu/text_stats.cpp) against their JavaScript definitions
// (the Gopher rules as src/data/filters.ts computed them before they went native), on random
// texts drawn from a pool of ASCII, accented, CJK, astral and space characters, and on slices
// that cut a surrogate pair in half.
import { describe, expect, it } from 'vitest';
import { textStats, type NgramStat } from '../../src/text/stats.js';

const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]/g;
const LETTER_OR_DIGIT = /[\p{L}\p{N}\p{M}\s]/u;

function countWords(text: string): { words: number; cjk: number; latinWords: number; latinChars: number } {
  const cjk = (text.match(CJK) ?? []).length;
  let latinWords = 0;
  let latinChars = 0;
  for (const w of text.replace(CJK, ' ').split(/\s+/)) {
    if (w.length === 0) continue;
    latinWords++;
    latinChars += w.length;
  }
  return { words: cjk + latinWords, cjk, latinWords, latinChars };
}

function tokens(text: string): string[] {
  return text
    .replace(CJK, (c) => ` ${c} `)
    .toLowerCase()
    .split(/\s+/)
    .map((w) => w.replace(/^[\p{P}\p{S}]+|[\p{P}\p{S}]+$/gu, ''))
    .filter((w) => w.length > 0);
}

function dupFractions(items: string[]): [number, number] {
  const seen = new Set<string>();
  let dup = 0;
  let dupChars = 0;
  let chars = 0;
  let n = 0;
  for (const it of items) {
    if (it.length === 0) continue;
    n++;
    chars += it.length;
    if (seen.has(it)) (dup++, (dupChars += it.length));
    else seen.add(it);
  }
  return [n ? dup / n : 0, chars ? dupChars / chars : 0];
}

function ngram(words: string[], n: number, kind: 'top' | 'dup'): number {
  let total = 0;
  for (const w of words) total += w.length;
  if (words.length < n || total === 0) return 0;
  const keys: string[] = [];
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= words.length; i++) {
    const k = words.slice(i, i + n).join('\u0000');
    keys.push(k);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  if (kind === 'top') {
    let best = 0;
    let bestKey = '';
    for (const [k, c] of counts) if (c > best) (best = c), (bestKey = k);
    if (best < 2) return 0;
    const at = keys.indexOf(bestKey);
    let len = 0;
    for (let j = 0; j < n; j++) len += words[at + j]!.length;
    return (len * best) / total;
  }
  const covered = new Uint8Array(words.length);
  keys.forEach((k, i) => counts.get(k)! > 1 && covered.fill(1, i, i + n));
  let dupLen = 0;
  words.forEach((w, i) => covered[i] && (dupLen += w.length));
  return dupLen / total;
}

/** The statistics as the JavaScript filters defined them. */
function reference(text: string, analyze: number, ngrams: NgramStat[]) {
  const c = countWords(text);
  const s = text.slice(0, analyze);
  let chars = 0;
  let digits = 0;
  let symbols = 0;
  for (const ch of s) {
    chars++;
    const code = ch.charCodeAt(0);
    if (code >= 0x30 && code <= 0x39) digits++;
    else if (code < 0x80 ? !/[A-Za-z\s]/.test(ch) : !LETTER_OR_DIGIT.test(ch)) symbols++;
  }
  const lines = s.split('\n').filter((l) => l.trim());
  const [dupLineFraction, dupLineUnitFraction] = dupFractions(s.split('\n').map((l) => l.trim()));
  const [dupParagraphFraction, dupParagraphUnitFraction] = dupFractions(s.split(/\n\s*\n/).map((l) => l.trim()));
  const words = tokens(s);
  return {
    words: c.words, cjk: c.cjk, latinWords: c.latinWords, latinUnits: c.latinChars,
    hashEllipsis: (text.match(/#|\.\.\.|\u2026/g) ?? []).length,
    chars, digits, symbols,
    lines: lines.length,
    bulletLines: lines.filter((l) => /^\s*[•\-*‣◦▪]/.test(l)).length,
    ellipsisLines: lines.filter((l) => /(\.\.\.|\u2026)\s*$/.test(l)).length,
    dupLineFraction, dupLineUnitFraction, dupParagraphFraction, dupParagraphUnitFraction,
    ngrams: ngrams.map((g) => ngram(words, g.n, g.kind)),
  };
}

// Σ (final sigma) and İ (two code points in lower case) are the two places where per-character
// lower case differs from String.prototype.toLowerCase; the pool leaves them out.
const POOL = [
  ...'abcdefghij ABCDEFG 0123456789 .,;:!?-#*()"\'/%$ \n\n\t  ',
  'é', 'É', 'ß', 'Ω', 'ж', 'Ж', 'ï', '\u0301', '\u00a0', '\u3000', '\u2028', '…', '•', '‣', '◦', '▪', '—', '€', '©',
  '中', '国', '专', '利', 'の', 'カ', '한', '𝐀', '😀', '𠀀', '\ufeff', '\u200b', '\u0007',
];
const WORDS = ['the', 'device', 'Claim', 'claim', 'valve', '...', '— ', 'naïve', 'ÉCOLE', 'école', '"quoted"', '(1)', '中国', '😀😀', 'x1'];

function randomText(rand: () => number): string {
  const parts: string[] = [];
  const n = Math.floor(rand() * 120);
  for (let i = 0; i < n; i++) {
    const r = rand();
    if (r < 0.45) parts.push(WORDS[Math.floor(rand() * WORDS.length)]!, ' ');
    else if (r < 0.9) parts.push(POOL[Math.floor(rand() * POOL.length)]!);
    else parts.push(parts.slice(-8).join('')); // repeats make duplicate lines and n-grams
  }
  return parts.join('');
}

describe('native text statistics', () => {
  const ngrams: NgramStat[] = [{ n: 1, kind: 'top' }, { n: 2, kind: 'top' }, { n: 3, kind: 'top' }, { n: 4, kind: 'top' }, { n: 2, kind: 'dup' }, { n: 5, kind: 'dup' }, { n: 7, kind: 'dup' }];

  it('match the JavaScript definitions on random Unicode text', () => {
    let seed = 7;
    const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
    const texts = Array.from({ length: 400 }, () => randomText(rand));
    for (const analyze of [100_000, 37, 1]) {
      const got = textStats(texts, analyze, ngrams);
      texts.forEach((t, i) => {
        const want = reference(t, analyze, ngrams);
        const g = got[i]!;
        for (const k of Object.keys(want) as (keyof typeof want)[]) {
          if (k === 'ngrams') want.ngrams.forEach((v, j) => expect(g.ngrams[j], `${JSON.stringify(t)} ${ngrams[j]!.kind}-${ngrams[j]!.n}`).toBeCloseTo(v, 12));
          else expect(g[k], `${k} of ${JSON.stringify(t)} (analyze ${analyze})`).toBeCloseTo(want[k] as number, 12);
        }
      });
    }
  });

  it('cut a surrogate pair as String.slice does, and handle the edges', () => {
    const t = 'ab😀cd\n\nab😀cd';
    for (let a = 0; a <= t.length; a++) {
      const [g] = textStats([t], a, ngrams);
      const want = reference(t, a, ngrams);
      expect({ ...g, ngrams: g!.ngrams.map((v) => +v.toFixed(12)) }).toEqual({ ...want, ngrams: want.ngrams.map((v) => +v.toFixed(12)) });
    }
    const [e] = textStats([''], 100, ngrams);
    expect(e!.words + e!.chars + e!.lines).toBe(0);
    expect(() => textStats(['x'], -1, [])).toThrow(/analyze/);
    expect(() => textStats(['x'], 10, [{ n: 0, kind: 'top' }])).toThrow(/n-gram size/);
  });
});
