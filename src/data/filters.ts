// Quality filters: each one looks at a document and returns why it should go (a reason string)
// or null. Rules follow Gopher (Rae et al. 2021, appendix A) where they apply, with thresholds
// in the config; language identification uses franc (trigram profiles) plus a script check,
// because short Chinese text is better told apart by its Han characters than by trigrams.
// Every statistic of the length, word, character, line and repetition rules comes from one
// native pass per document (src/text/stats.ts, native/cpu/text_stats.cpp), computed once and
// shared by those rules.
import { PatentGPTError } from '../errors.js';
import { type NgramStat, type TextStats, textStats } from '../text/stats.js';
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
  /** Most share of non-space characters that are noise: control characters, mojibake (UTF-8
   *  read as Latin-1: C1 controls, 'Ã' or 'Â' before a Latin-1 sign) and signs that OCR makes of
   *  dirt on a scan (| ~ ^ ` ¢ ¤ ¦ « » ...). Letters of any script, digits, the punctuation of
   *  English and Chinese text and scientific signs (§ ° ± µ ...) are not noise. */
  maxNoiseCharFraction?: number;
  /** Most share of space-separated words with a noise character or with punctuation between
   *  two letters that no word has ('wo|rd', 'fol%!&m'): garbled OCR (Latin-script text only). */
  maxGarbledWordFraction?: number;
  /** Least share of the characters of non-blank lines in lines that end like a sentence or a
   *  clause (. ! ? ; : , and their CJK forms, closing quotes and brackets after them): navigation
   *  menus, link lists and cookie banners do not (C4 keeps only such lines). */
  minProseLineFraction?: number;
  /** Characters per n-gram word in CJK text (default 1: a character is a word). Chinese words
   *  average about two characters, so a 5-gram of single characters is a phrase ("本法规定的") and
   *  recurs in any long text; with 2, the n-gram rules look at 2n characters in text that is mostly
   *  CJK (at most 20), as Chinese corpus pipelines count character n-grams of that length. */
  cjkNgramChars?: number;
  /** Judge the n-gram repetition rules per section rather than over the whole document (see
   *  SectionConfig); absent or false: the whole document is one bag of n-grams (Gopher). */
  sections?: SectionConfig | false;
  /** Overrides of these thresholds per document category ('patent', 'application', 'law', ...):
   *  a category's documents are judged by {...this, ...byCategory[category]}. */
  byCategory?: Record<string, FilterConfig>;
}

/**
 * Long documents judged by section: patents and statutes repeat their formulas across the whole
 * text (claims restate their antecedents, every article says "in accordance with this Law"), so
 * over a long document nearly every 5-gram recurs somewhere. A document is cut at hard
 * boundaries (where its claims begin) and, inside each part, at line breaks (paragraphs,
 * articles) into sections of at most maxChars; each section is judged by the n-gram rules and
 * the document is dropped when the sections that fail hold more than maxFailedFraction of its
 * characters. Duplicate-line and duplicate-paragraph rules still look at the whole document.
 */
export interface SectionConfig {
  /** Characters per section (default 4000; a single longer paragraph stays one section). */
  maxChars?: number;
  /** Share of the characters in failing sections above which the document is dropped (default 0.5). */
  maxFailedFraction?: number;
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

const KNOWN = new Set(Object.keys({ ...GOPHER_DEFAULTS, minChars: 0, maxChars: 0, maxSymbolRatio: 0, maxDigitRatio: 0, boilerplate: 0, maxBoilerplateFraction: 0, languages: 0, minLanguageScore: 0, analyzeChars: 0, maxPerplexity: 0, maxNoiseCharFraction: 0, maxGarbledWordFraction: 0, minProseLineFraction: 0, cjkNgramChars: 0, sections: 0, byCategory: 0, $comment: 0 }));

/** The thresholds that apply to a category: the config with its byCategory entry on top. */
export function filterConfigFor(cfg: FilterConfig, category: string): FilterConfig {
  const { byCategory, ...base } = cfg;
  const own = byCategory?.[category];
  if (!own) return base;
  const { byCategory: _nested, ...rest } = own;
  return { ...base, ...rest };
}

/**
 * An input's filter settings over the global ones, with the precedence global < global's
 * category entry < input < input's category entry: a value an input sets itself is never
 * overridden by the category thresholds.
 */
export function mergeFilterConfigs(global: FilterConfig, input: FilterConfig): FilterConfig {
  const { byCategory: gCats, ...g } = global;
  const { byCategory: iCats, ...i } = input;
  const cats = new Set([...Object.keys(gCats ?? {}), ...Object.keys(iCats ?? {})]);
  const out: FilterConfig = { ...g, ...i };
  if (cats.size > 0) {
    out.byCategory = {};
    for (const c of cats) out.byCategory[c] = { ...(gCats?.[c] ?? {}), ...i, ...(iCats?.[c] ?? {}) };
  }
  return out;
}

/** The filter chains of one config, one per category, built when a category is first seen. */
export class FilterSet {
  private readonly chains = new Map<string, Filter[]>();

  constructor(readonly config: FilterConfig) {
    buildFilters(config); // validate now (and every byCategory entry), not at the first document
  }

  forCategory(category: string): Filter[] {
    let c = this.chains.get(category);
    if (!c) this.chains.set(category, (c = buildChain(filterConfigFor(this.config, category))));
    return c;
  }
}

/** Builds the filter chain of a config (in a fixed order: cheap checks first); the byCategory
 *  entries are validated, and the chain is that of a category without an entry. */
export function buildFilters(cfg: FilterConfig): Filter[] {
  if (cfg.byCategory !== undefined) {
    if (!cfg.byCategory || typeof cfg.byCategory !== 'object' || Array.isArray(cfg.byCategory))
      throw new PatentGPTError('E_CONFIG', 'filters.byCategory must map category names to filter settings');
    for (const [cat, f] of Object.entries(cfg.byCategory)) {
      if (!f || typeof f !== 'object' || Array.isArray(f)) throw new PatentGPTError('E_CONFIG', `filters.byCategory.${cat} must be an object of filter settings`);
      try {
        buildChain(filterConfigFor(cfg, cat));
      } catch (err) {
        if (err instanceof PatentGPTError) throw new PatentGPTError(err.code, err.message.replace(/^filters/, `filters.byCategory.${cat}`));
        throw err;
      }
    }
  }
  return buildChain(filterConfigFor(cfg, ''));
}

function buildChain(cfg: FilterConfig): Filter[] {
  for (const k of Object.keys(cfg)) if (!KNOWN.has(k)) throw new PatentGPTError('E_CONFIG', `filters: unknown field '${k}' (known: ${[...KNOWN].join(', ')})`);
  for (const k of ['minChars', 'maxChars', 'minWords', 'maxWords', 'analyzeChars', 'maxPerplexity'] as const) checkRange(k, cfg[k]);
  for (const k of ['maxSymbolRatio', 'maxDigitRatio', 'maxHashEllipsisRatio', 'maxBulletLines', 'maxEllipsisLines', 'maxDupLineFraction', 'maxDupLineCharFraction', 'maxDupParagraphFraction', 'maxDupParagraphCharFraction', 'maxBoilerplateFraction', 'minLanguageScore', 'maxNoiseCharFraction', 'maxGarbledWordFraction', 'minProseLineFraction'] as const)
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
  const limits = [...top.map(([, v]) => v), ...dup.map(([, v]) => v)];
  const cjkScale = cfg.cjkNgramChars ?? 1;
  if (!Number.isInteger(cjkScale) || cjkScale < 1 || cjkScale > 4) throw new PatentGPTError('E_CONFIG', `filters.cjkNgramChars must be an integer in [1, 4], got ${JSON.stringify(cfg.cjkNgramChars)}`);
  const cjkNgrams: NgramStat[] = ngrams.map((g) => ({ n: Math.min(20, g.n * cjkScale), kind: g.kind }));
  const isCjk = (c: TextStats): boolean => cjkScale > 1 && c.cjk > c.latinWords;
  let sec: Required<SectionConfig> | null = null;
  if (cfg.sections !== undefined && cfg.sections !== false) {
    if (!cfg.sections || typeof cfg.sections !== 'object') throw new PatentGPTError('E_CONFIG', 'filters.sections must be {maxChars?, maxFailedFraction?} or false');
    for (const k of Object.keys(cfg.sections)) if (k !== 'maxChars' && k !== 'maxFailedFraction') throw new PatentGPTError('E_CONFIG', `filters.sections: unknown field '${k}' (known: maxChars, maxFailedFraction)`);
    checkRange('sections.maxChars', cfg.sections.maxChars, 100);
    checkRange('sections.maxFailedFraction', cfg.sections.maxFailedFraction, 0, 1);
    sec = { maxChars: cfg.sections.maxChars ?? 4000, maxFailedFraction: cfg.sections.maxFailedFraction ?? 0.5 };
  }
  // the n-gram statistics are computed per section when sections are on: the whole-document
  // pass then skips them (one n-gram pass per document either way)
  const wholeNgrams = sec ? [] : ngrams;
  // the statistics of the document's current text (boilerplate removal may have changed it)
  let last: { doc: Document; text: string; stats: TextStats } | null = null;
  const stats = (d: Document): TextStats => {
    if (last === null || last.doc !== d || last.text !== d.text) last = { doc: d, text: d.text, stats: textStats([d.text], analyze, wholeNgrams)[0]! };
    return last.stats;
  };
  /** The first n-gram rule a statistics vector breaks, or null. */
  const ngramReason = (v: readonly number[]): string | null => {
    for (let i = 0; i < ngrams.length; i++) if (v[i]! > limits[i]!) return `${ngrams[i]!.kind}-${ngrams[i]!.n}gram`;
    return null;
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
  if (cfg.maxNoiseCharFraction !== undefined || cfg.maxGarbledWordFraction !== undefined || cfg.minProseLineFraction !== undefined) {
    out.push({
      name: 'noise',
      apply(d) {
        const g = noiseStats(d.text, analyze);
        if (cfg.maxNoiseCharFraction !== undefined && g.nonSpace > 0 && g.noise / g.nonSpace > cfg.maxNoiseCharFraction) return 'noise-chars';
        if (cfg.maxGarbledWordFraction !== undefined && g.latinWords >= 10 && g.garbledWords / g.latinWords > cfg.maxGarbledWordFraction) return 'garbled-words';
        if (cfg.minProseLineFraction !== undefined && g.lineChars > 0 && g.proseLineChars / g.lineChars < cfg.minProseLineFraction) return 'prose-lines';
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
        if (ngrams.length === 0) return null;
        const spec = isCjk(c) ? cjkNgrams : ngrams;
        if (!sec) return ngramReason(spec === ngrams ? c.ngrams : textStats([d.text], analyze, spec)[0]!.ngrams);
        const parts = sectionsOf(d, analyze, sec.maxChars);
        const st = textStats(parts, analyze, spec);
        let total = 0;
        let failed = 0;
        let worst: { reason: string; chars: number } | null = null;
        for (let i = 0; i < parts.length; i++) {
          const len = parts[i]!.length;
          total += len;
          const r = ngramReason(st[i]!.ngrams);
          if (r === null) continue;
          failed += len;
          if (!worst || len > worst.chars) worst = { reason: r, chars: len };
        }
        return worst && failed > sec.maxFailedFraction * total ? worst.reason : null;
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

// Noise characters: ASCII | ` ~ ^ \ and controls; Latin-1 signs that no prose uses (¢ £ ¤ ¥ ¦ ¨ ª « ¬ ¯ ´ ¶ ¸ º » ¿)
// and the C1 controls; the replacement character. Latin-1 signs of science and law (§ © ® ° ± ² ³ µ · ¹ ¼ ½ ¾) are not.
const NOISE_LATIN1 = new Set([0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa8, 0xaa, 0xab, 0xac, 0xaf, 0xb4, 0xb6, 0xb8, 0xba, 0xbb, 0xbf]);
const PROSE = /[\p{L}\p{N}\p{M}\p{Z}\p{Pd}\p{Ps}\p{Pe}\p{Pi}\p{Pf}\p{Po}\p{Sm}\p{Sc}\p{So}]/u;

/** 1 for a noise character (see maxNoiseCharFraction), 0 otherwise (the 'Ã'/'Â' rule aside). */
function noiseOf(c: number): number {
  if (c < 0x80) return c === 0x7c || c === 0x60 || c === 0x7e || c === 0x5e || c === 0x5c || (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f ? 1 : 0;
  if (c < 0xa0) return 1; // C1 controls: UTF-8 continuation bytes read as Latin-1
  if (c < 0x100) return NOISE_LATIN1.has(c) ? 1 : 0;
  if ((c >= 0x3400 && c <= 0x9fff) || (c >= 0x3000 && c <= 0x30ff) || (c >= 0xff00 && c <= 0xffef) || (c >= 0xac00 && c <= 0xd7af)) return 0; // CJK, its punctuation, kana, fullwidth, hangul
  if (c === 0xfffd) return 1;
  if (c >= 0xd800 && c <= 0xdfff) return 0; // surrogate halves (astral letters and emoji): not judged
  return PROSE.test(String.fromCharCode(c)) ? 0 : 1;
}

/** Letters and digits of any script (the inside of a word). */
function isWordChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || (c >= 0xc0 && c !== 0xd7 && c !== 0xf7);
}

/** Punctuation that no word has between two letters (a hyphen, an apostrophe, a period, a comma, a slash may). */
function isOddInside(c: number): boolean {
  return c === 0x21 || c === 0x3b || c === 0x2a || c === 0x25 || c === 0x23 || c === 0x40 || c === 0x3f || c === 0x22;
}

/** Characters that end a sentence or a clause (ASCII . ! ? ; : , and the CJK and fullwidth forms). */
function endsClause(c: number): boolean {
  return c === 0x2e || c === 0x21 || c === 0x3f || c === 0x3b || c === 0x3a || c === 0x2c || c === 0x3002 || c === 0xff01 || c === 0xff1f || c === 0xff1b || c === 0xff1a || c === 0xff0c || c === 0x3001 || c === 0x2026;
}

/** Closing quotes and brackets, looked through for the punctuation before them. */
function isCloser(c: number): boolean {
  return c === 0x22 || c === 0x27 || c === 0x29 || c === 0x5d || c === 0x201d || c === 0x2019 || c === 0x300d || c === 0x300f || c === 0x300b || c === 0xff09;
}

// noiseStats looks each character up once in a table of class bits per UTF-16 unit, filled on first sight.
const K_KNOWN = 1;
const K_NOISE = 2;
const K_WORD = 4;
const K_ODD = 8;
const K_END = 16;
const K_CLOSER = 32;
const K_SPACE = 64;
const CLASS = new Uint8Array(65536);
function classOf(c: number): number {
  let k = CLASS[c]!;
  if (k === 0) {
    const space = c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d || c === 0x3000 || c === 0xa0;
    k = K_KNOWN | (space ? K_SPACE : noiseOf(c) ? K_NOISE : 0) | (isWordChar(c) ? K_WORD : 0) | (isOddInside(c) ? K_ODD : 0) | (endsClause(c) ? K_END : 0) | (isCloser(c) ? K_CLOSER : 0);
    CLASS[c] = k;
  }
  return k;
}

/** Noise characters, garbled words and punctuated lines of the first `analyze` characters, in one pass without allocation. */
export function noiseStats(text: string, analyze: number): { nonSpace: number; noise: number; latinWords: number; garbledWords: number; lineChars: number; proseLineChars: number } {
  const end = Math.min(text.length, analyze);
  let lineChars = 0;
  let proseLineChars = 0;
  let lineLen = 0; // non-space characters of the current line
  let last = 0; // its last non-space character that is not a closer
  let lastAny = 0;
  const endLine = (): void => {
    if (lineLen > 0) {
      lineChars += lineLen;
      if (classOf(last) & K_END && (classOf(lastAny) & K_CLOSER || lastAny === last)) proseLineChars += lineLen;
    }
    lineLen = 0;
    last = lastAny = 0;
  };
  let nonSpace = 0;
  let noise = 0;
  let latinWords = 0;
  let garbledWords = 0;
  let inWord = false;
  let latin = false;
  let bad = false;
  let prevWordChar = false;
  let pendingOdd = false;
  for (let i = 0; i < end; i++) {
    const c = text.charCodeAt(i);
    const k = classOf(c);
    if (k & K_SPACE) {
      if (c === 0x0a) endLine();
      if (inWord) {
        if (latin) latinWords++;
        if (latin && bad) garbledWords++;
      }
      inWord = latin = bad = prevWordChar = pendingOdd = false;
      continue;
    }
    lineLen++;
    lastAny = c;
    if (!(k & K_CLOSER)) last = c;
    nonSpace++;
    // 'Ã©', 'Â°': UTF-8 read as Latin-1
    const n = k & K_NOISE || ((c === 0xc3 || c === 0xc2) && i + 1 < end && text.charCodeAt(i + 1) >= 0x80 && text.charCodeAt(i + 1) < 0xc0) ? 1 : 0;
    noise += n;
    inWord = true;
    const w = (k & K_WORD) !== 0;
    if (w && c < 0x250) latin = true;
    if (n) bad = true;
    else if (w) {
      if (pendingOdd) bad = true;
      pendingOdd = false;
    } else if (prevWordChar && k & K_ODD) pendingOdd = true;
    prevWordChar = w;
  }
  if (inWord && latin) {
    latinWords++;
    if (bad) garbledWords++;
  }
  endLine();
  return { nonSpace, noise, latinWords, garbledWords, lineChars, proseLineChars };
}

/**
 * The sections of a document's text (its first `analyze` characters) for the repetition rules:
 * cut where the claims begin (a hard boundary: a patent is judged by description and claims),
 * then at line breaks into pieces of at most maxChars (whole articles or paragraphs; a longer
 * paragraph stays one section). Substrings of the text: no copies of its characters.
 */
export function sectionsOf(doc: Pick<Document, 'text' | 'claims'>, analyze: number, maxChars: number): string[] {
  const text = doc.text.length > analyze ? doc.text.slice(0, analyze) : doc.text;
  const hard: number[] = [0];
  if (doc.claims.length > 0) {
    const at = text.lastIndexOf(doc.claims.slice(0, 200));
    if (at > 0) hard.push(at);
  }
  hard.push(text.length);
  const out: string[] = [];
  for (let h = 0; h + 1 < hard.length; h++) {
    const end = hard[h + 1]!;
    let start = hard[h]!;
    while (end - start > maxChars) {
      // the last line break that keeps the section within maxChars, else the first after it
      let cut = text.lastIndexOf('\n', start + maxChars);
      if (cut <= start) cut = text.indexOf('\n', start + maxChars);
      if (cut < 0 || cut >= end) break;
      out.push(text.slice(start, cut));
      start = cut + 1;
    }
    if (end > start) out.push(text.slice(start, end));
  }
  return out.filter((p) => p.trim().length > 0);
}

/** Applies the filters; returns the first reason to drop, or null. Sets doc.lang when identified. */
export function applyFilters(filters: readonly Filter[], doc: Document): string | null {
  for (const f of filters) {
    const r = f.apply(doc);
    if (r !== null) return r;
  }
  return null;
}
