// Tokenizer statistics (`patentgpt tokenizer stats`): characters per token and tokens per document,
// by language (a line is Chinese when it has more Han characters than Latin letters), on all lines
// or only on held-out ones. Held-out lines are chosen by a hash of their text, so the trainer
// (trainBpe's holdOut) and the statistics agree on the split, and a line repeated in several
// documents is on one side only.

/** Chinese or English (every line that is not mostly Han). */
export type StatsLanguage = 'zh' | 'en';

export interface TokenizerStatsRow {
  model: string;
  vocab: number;
  language: StatsLanguage;
  /** Documents (files) with at least one measured line of the language. */
  documents: number;
  lines: number;
  characters: number;
  tokens: number;
  charsPerToken: number;
  tokensPerDocument: number;
}

export interface StatsDocument {
  path: string;
  text: string;
}

/** Anything with an encode (a SentencePieceTokenizer, the byte tokenizer). */
export interface CountingTokenizer {
  readonly vocabSize: number;
  encode(text: string): ArrayLike<number>;
}

/** True when the line belongs to the held-out split of 1 in `every` lines (FNV-1a of its UTF-16). */
export function isHeldOut(line: string, every: number): boolean {
  let h = 0x811c9dc5;
  for (let i = 0; i < line.length; i++) h = Math.imul(h ^ line.charCodeAt(i), 0x01000193);
  return (h >>> 0) % every === 0;
}

const HAN = /\p{Script=Han}/gu;
const LATIN = /\p{Script=Latin}/gu;

export function lineLanguage(line: string): StatsLanguage {
  const han = line.match(HAN)?.length ?? 0;
  return han > 0 && han >= (line.match(LATIN)?.length ?? 0) ? 'zh' : 'en';
}

/**
 * Tokens of each document's non-empty lines (each line encoded alone, as training data is), per
 * model and language. With `holdOut` = N only the held-out lines (1 in N) count.
 */
export function tokenizerStats(
  models: { name: string; tokenizer: CountingTokenizer }[],
  docs: readonly StatsDocument[],
  opts: { holdOut?: number; onDocument?: (done: number) => void } = {},
): TokenizerStatsRow[] {
  const picked = docs.map((d) => {
    const byLang: Record<StatsLanguage, string[]> = { zh: [], en: [] };
    for (const line of d.text.split('\n')) {
      if (line.length === 0 || (opts.holdOut && !isHeldOut(line, opts.holdOut))) continue;
      byLang[lineLanguage(line)].push(line);
    }
    return byLang;
  });
  const rows: TokenizerStatsRow[] = [];
  for (const { name, tokenizer } of models) {
    const acc = { zh: { documents: 0, lines: 0, characters: 0, tokens: 0 }, en: { documents: 0, lines: 0, characters: 0, tokens: 0 } };
    picked.forEach((byLang, i) => {
      for (const lang of ['zh', 'en'] as const) {
        const a = acc[lang];
        if (byLang[lang].length > 0) a.documents++;
        for (const line of byLang[lang]) {
          a.lines++;
          for (const _ of line) a.characters++; // code points
          a.tokens += tokenizer.encode(line).length;
        }
      }
      opts.onDocument?.(i + 1);
    });
    for (const lang of ['zh', 'en'] as const) {
      const a = acc[lang];
      if (a.lines === 0) continue;
      rows.push({ model: name, vocab: tokenizer.vocabSize, language: lang, ...a, charsPerToken: a.characters / a.tokens, tokensPerDocument: a.tokens / a.documents });
    }
  }
  return rows;
}
