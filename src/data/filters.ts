// Quality filters: each one looks at a document and returns why it should go (a reason string)
// or null. Rules follow Gopher (Rae et al. 2021, appendix A) where they apply, with thresholds
// in the config; language identification uses franc (trigram profiles) plus a script check,
// because short Chinese text is better told apart by its Han characters than by trigrams.
// Every statistic of the length, word, character, line and repetition rules comes from one
// native pass per document (src/tensor/text.ts, native/cpu/text_stats.cpp), computed once and
// shared by those rules.
import { PatentGPTError } from '../errors.js';
import { type NgramStat, type TextStats, textStats } from '../tensor/text.js';
import type { Document } from './document.js';
import { detectLanguageCode } from './language.js';

export interface FilterConfig {
  /** Characters of text (inclusive bounds). */
  minChars?: number;
  maxChars?: number;
  /** Words (a CJK character counts as a word). */
  minWords?: number;
  maxWords?: number;
  /** Mean length of space-separated words, for non-CJK text (Gopher: 3..10). */
  meanWordLength?: [number, number];
  /** Most share of characters that are neither letters, digits, marks nor spaces (default off). */
  maxSymbolRatio?: number;
  /** Most share of characters that are digits. */
  maxDigitRatio?: number;
  /** Gopher: '#' and '...' per word. */
  maxHashEllipsisRatio?: number;
  /** Gopher: share of lines starting with a bullet, and ending with an ellipsis. */
  maxBulletLines?: number;
  maxEllipsisLines?: number;
  /** Gopher repetition: duplicate lines (share of lines, share of characters). */
  maxDupLineFraction?: number;
  maxDupLineCharFraction?: number;
  maxDupParagraphFraction?: number;
  maxDupParagraphCharFraction?: number;
  /** Gopher: characters in the most frequent n-gram, per n (2, 3, 4). */
  maxTopNgramCharFraction?: Record<string, number>;
  /** Gopher: characters in duplicated n-grams, per n (5..10). */
  maxDupNgramCharFraction?: Record<string, number>;
  /** Regexes (source strings, case-insensitive) of boilerplate lines to remove. */
  boilerplate?: string[];
  /** Drop a document when more than this share of its lines were boilerplate. */
  maxBoilerplateFraction?: number;
  /** ISO 639-1 codes to keep ('en', 'zh', ...); empty or absent: keep every language. */
  languages?: string[];
  /** Least confidence of the language guess, 0..1 (franc's normalised score). */
  minLanguageScore?: number;
  /** Analyse at most this many characters for repetition and language (default 100,000). */
  analyzeChars?: number;
  /** Drop when the perplexity hook scores a document above this. */
  maxPerplexity?: number;
}

/** Gopher's published thresholds: a sensible start for web-like text. */
export const GOPHER_DEFAULTS: FilterConfig = {
  minWords: 50,
  maxWords: 100_000,
  meanWordLength: [3, 10],
  maxHashEllipsisRatio: 0.1,
  maxBulletLines: 0.9,
  maxEllipsisLines: 0.3,
  maxDupLineFraction: 0.3,
  maxDupLineCharFraction: 0.2,
  maxDupParagraphFraction: 0.3,
  maxDupParagraphCharFraction: 0.2,
  maxTopNgramCharFraction: { 2: 0.2, 3: 0.18, 4: 0.16 },
  maxDupNgramCharFraction: { 5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.1 },
};

/** A perplexity scorer (a language model from the trainer): lower is more natural text. */
export type PerplexityScorer = (text: string) => number | Promise<number>;

export interface Filter {
  name: string;
  /** The reason to drop (e.g. 'gopher-dup-lines'), or null to keep. May rewrite doc.text (boilerplate). */
  apply(doc: Document): string | null;
}

const ISO3: Record<string, string> = {
  eng: 'en', cmn: 'zh', spa: 'es', fra: 'fr', deu: 'de', jpn: 'ja', kor: 'ko', rus: 'ru', por: 'pt', ita: 'it',
  arb: 'ar', hin: 'hi', nld: 'nl', pol: 'pl', tur: 'tr', vie: 'vi', ind: 'id', ukr: 'uk', swe: 'sv',
};

/** Language of a text as ISO 639-1 ('und' when unsure). Han-dominated text is 'zh' (or 'ja' with kana). */
export function identifyLanguage(text: string, maxChars = 4000): { lang: string; score: number } {
  const s = text.slice(0, maxChars);
  let han = 0;
  let kana = 0;
  let hangul = 0;
  let letters = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if ((c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf)) han++;
    else if (c >= 0x3040 && c <= 0x30ff) kana++;
    else if (c >= 0xac00 && c <= 0xd7af) hangul++;
    else if (c < 0x80) letters += +((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a); // ASCII: \p{L} is [A-Za-z]
    else if (/\p{L}/u.test(ch)) letters++;
  }
  const total = han + kana + hangul + letters;
  if (total === 0) return { lang: 'und', score: 0 };
  // Script first: a CJK character carries about as much as a 2-3 letter Latin word.
  const cjkWeight = (han + kana + hangul) * 3;
  if (cjkWeight > letters) {
    if (kana > 0.1 * (han + kana)) return { lang: 'ja', score: (kana + han) / total };
    if (hangul > han) return { lang: 'ko', score: hangul / total };
    return { lang: 'zh', score: han / total };
  }
  const code = detectLanguageCode(s, 20); // franc's answer, faster
  if (code === 'und') return { lang: 'und', score: 0 };
  return { lang: ISO3[code] ?? code, score: letters / total };
}

function checkRange(name: string, v: number | undefined, lo = 0, hi = Infinity): void {
  if (v !== undefined && (typeof v !== 'number' || !(v >= lo && v <= hi)))
    throw new PatentGPTError('E_CONFIG', `filters.${name} must be a number in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
}

const KNOWN = new Set(Object.keys({ ...GOPHER_DEFAULTS, minChars: 0, maxChars: 0, maxSymbolRatio: 0, maxDigitRatio: 0, boilerplate: 0, maxBoilerplateFraction: 0, languages: 0, minLanguageScore: 0, analyzeChars: 0, maxPerplexity: 0 }));

/** Builds the filter chain of a config (in a fixed order: cheap checks first). */
export function buildFilters(cfg: FilterConfig): Filter[] {
  for (const k of Object.keys(cfg)) if (!KNOWN.has(k)) throw new PatentGPTError('E_CONFIG', `filters: unknown field '${k}' (known: ${[...KNOWN].join(', ')})`);
  for (const k of ['minChars', 'maxChars', 'minWords', 'maxWords', 'analyzeChars', 'maxPerplexity'] as const) checkRange(k, cfg[k]);
  for (const k of ['maxSymbolRatio', 'maxDigitRatio', 'maxHashEllipsisRatio', 'maxBulletLines', 'maxEllipsisLines', 'maxDupLineFraction', 'maxDupLineCharFraction', 'maxDupParagraphFraction', 'maxDupParagraphCharFraction', 'maxBoilerplateFraction', 'minLanguageScore'] as const)
    checkRange(k, cfg[k], 0, 1);
  const analyze = cfg.analyzeChars ?? 100_000;
  const out: Filter[] = [];
  if (cfg.boilerplate && cfg.boilerplate.length > 0) {
    let res: RegExp[];
    try {
      res = cfg.boilerplate.map((p) => new RegExp(p, 'i'));
    } catch (err) {
      throw new PatentGPTError('E_CONFIG', `filters.boilerplate: ${err instanceof Error ? err.message : String(err)}`);
    }
    const maxFrac = cfg.maxBoilerplateFraction ?? 1;
    out.push({
      name: 'boilerplate',
      apply(doc) {
        const lines = doc.text.split('\n');
        const kept = lines.filter((l) => !res.some((r) => r.test(l)));
        if (kept.length === lines.length) return null;
        const removed = lines.length - kept.length;
        doc.meta.boilerplateLines = removed;
        if (removed / lines.length > maxFrac) return 'boilerplate';
        doc.text = kept.join('\n');
        return null;
      },
    });
  }
  if (cfg.minChars !== undefined || cfg.maxChars !== undefined) {
    const lo = cfg.minChars ?? 0;
    const hi = cfg.maxChars ?? Infinity;
    out.push({ name: 'length', apply: (d) => (d.text.length < lo ? 'too-short' : d.text.length > hi ? 'too-long' : null) });
  }
  const top = Object.entries(cfg.maxTopNgramCharFraction ?? {}).map(([n, v]) => [Number(n), v] as const);
  const dup = Object.entries(cfg.maxDupNgramCharFraction ?? {}).map(([n, v]) => [Number(n), v] as const);
  for (const [n, v] of [...top, ...dup]) {
    if (!Number.isInteger(n) || n < 1 || n > 20) throw new PatentGPTError('E_CONFIG', `filters: n-gram size must be an integer in [1, 20], got ${n}`);
    checkRange(`n-gram ${n}`, v, 0, 1);
  }
  const ngrams: NgramStat[] = [...top.map(([n]) => ({ n, kind: 'top' as const })), ...dup.map(([n]) => ({ n, kind: 'dup' as const }))];
  // the statistics of the document's current text (boilerplate removal may have changed it)
  let last: { doc: Document; text: string; stats: TextStats } | null = null;
  const stats = (d: Document): TextStats => {
    if (last === null || last.doc !== d || last.text !== d.text) last = { doc: d, text: d.text, stats: textStats([d.text], analyze, ngrams)[0]! };
    return last.stats;
  };
  const wantsWords = cfg.minWords !== undefined || cfg.maxWords !== undefined || cfg.meanWordLength !== undefined || cfg.maxHashEllipsisRatio !== undefined;
  if (wantsWords) {
    const [mlo, mhi] = cfg.meanWordLength ?? [0, Infinity];
    out.push({
      name: 'words',
      apply(d) {
        const c = stats(d);
        if (cfg.minWords !== undefined && c.words < cfg.minWords) return 'too-few-words';
        if (cfg.maxWords !== undefined && c.words > cfg.maxWords) return 'too-many-words';
        if (c.latinWords > c.cjk && c.latinWords > 0) {
          const mean = c.latinUnits / c.latinWords;
          if (mean < mlo || mean > mhi) return 'mean-word-length';
        }
        if (cfg.maxHashEllipsisRatio !== undefined && c.words > 0 && c.hashEllipsis / c.words > cfg.maxHashEllipsisRatio) return 'symbol-to-word';
        return null;
      },
    });
  }
  if (cfg.maxSymbolRatio !== undefined || cfg.maxDigitRatio !== undefined) {
    out.push({
      name: 'characters',
      apply(d) {
        const c = stats(d);
        if (c.chars === 0) return null;
        if (cfg.maxSymbolRatio !== undefined && c.symbols / c.chars > cfg.maxSymbolRatio) return 'symbol-ratio';
        if (cfg.maxDigitRatio !== undefined && c.digits / c.chars > cfg.maxDigitRatio) return 'digit-ratio';
        return null;
      },
    });
  }
  if (cfg.maxBulletLines !== undefined || cfg.maxEllipsisLines !== undefined) {
    out.push({
      name: 'lines',
      apply(d) {
        const c = stats(d);
        if (c.lines === 0) return null;
        if (cfg.maxBulletLines !== undefined && c.bulletLines / c.lines > cfg.maxBulletLines) return 'bullet-lines';
        if (cfg.maxEllipsisLines !== undefined && c.ellipsisLines / c.lines > cfg.maxEllipsisLines) return 'ellipsis-lines';
        return null;
      },
    });
  }
  const rep = [cfg.maxDupLineFraction, cfg.maxDupLineCharFraction, cfg.maxDupParagraphFraction, cfg.maxDupParagraphCharFraction].some((v) => v !== undefined);
  if (rep || ngrams.length > 0) {
    out.push({
      name: 'repetition',
      apply(d) {
        const c = stats(d);
        if (cfg.maxDupLineFraction !== undefined && c.dupLineFraction > cfg.maxDupLineFraction) return 'dup-lines';
        if (cfg.maxDupLineCharFraction !== undefined && c.dupLineUnitFraction > cfg.maxDupLineCharFraction) return 'dup-line-chars';
        if (cfg.maxDupParagraphFraction !== undefined && c.dupParagraphFraction > cfg.maxDupParagraphFraction) return 'dup-paragraphs';
        if (cfg.maxDupParagraphCharFraction !== undefined && c.dupParagraphUnitFraction > cfg.maxDupParagraphCharFraction) return 'dup-paragraph-chars';
        for (let i = 0; i < ngrams.length; i++) {
          const g = ngrams[i]!;
          const limit = i < top.length ? top[i]![1] : dup[i - top.length]![1];
          if (c.ngrams[i]! > limit) return `${g.kind}-${g.n}gram`;
        }
        return null;
      },
    });
  }
  if (cfg.languages && cfg.languages.length > 0) {
    const allowed = new Set(cfg.languages);
    const minScore = cfg.minLanguageScore ?? 0;
    out.push({
      name: 'language',
      apply(d) {
        if (d.lang === 'und') {
          const g = identifyLanguage(d.text);
          d.lang = g.lang;
          if (g.score < minScore) return 'language-unsure';
        }
        return allowed.has(d.lang) ? null : 'language';
      },
    });
  }
  return out;
}

/** Applies the filters; returns the first reason to drop, or null. Sets doc.lang when identified. */
export function applyFilters(filters: readonly Filter[], doc: Document): string | null {
  for (const f of filters) {
    const r = f.apply(doc);
    if (r !== null) return r;
  }
  return null;
}
