// Typed access to the native text routines: the BPE trainer (native/cpu/bpe_train.cpp) for
// src/tokenizer, and the filter statistics (native/cpu/text_stats.cpp) for src/data.
import { PatentGPTError } from '../errors.js';
import { addon, type NativeBpeTrainer } from '../native/loader.js';
import { packTexts, utf8Capacity } from './batch.js';

export interface BpeTrainerConfig {
  splitByWhitespace: boolean;
  allowWhitespaceOnlyPieces: boolean;
}

export interface BpeMergeConfig {
  maxPieceLength: number;
  splitByWhitespace: boolean;
  splitByUnicodeScript: boolean;
  splitDigits: boolean;
  allowWhitespaceOnlyPieces: boolean;
  /** Strings never added as merged pieces (the meta pieces). */
  reserved: string[];
}

/** The native word counter and merge loop of the BPE trainer (spm_train --model_type=bpe). */
export class NativeBpe {
  private readonly t: NativeBpeTrainer;

  constructor(cfg: BpeTrainerConfig) {
    this.t = new (addon().BpeTrainer)(cfg.splitByWhitespace, cfg.allowWhitespaceOnlyPieces);
  }
  /** Normalized sentences, UTF-8, separated by '\n'. */
  addSentences(utf8: Uint8Array): void {
    this.t.addSentences(utf8);
  }
  get sentences(): number {
    return this.t.sentences;
  }
  get uniqueWords(): number {
    return this.t.uniqueWords;
  }
  /** Every character with its weighted count, most frequent first (ties: smaller code point). */
  charCounts(): { cps: Uint32Array; counts: Float64Array } {
    return this.t.charCounts();
  }
  /** Kept characters with their script codes (-1 any, -2 inherited); the others become unknown. */
  begin(cps: Uint32Array, scripts: Int32Array, cfg: BpeMergeConfig): void {
    this.t.begin(cps, scripts, cfg.maxPieceLength, cfg.splitByWhitespace, cfg.splitByUnicodeScript, cfg.splitDigits,
      cfg.allowWhitespaceOnlyPieces, cfg.reserved);
  }
  /** Adds up to n merged pieces; returns how many were added (fewer when no pair is left). */
  step(n: number): number {
    return this.t.step(n);
  }
  /** Pieces added so far from index `from`, with their frequencies when merged. */
  pieces(from = 0): { pieces: string[]; freqs: Float64Array } {
    return this.t.pieces(from);
  }
}

/** Statistics of one text for the quality filters; lengths are UTF-16 code units (string.length). */
export interface TextStats {
  /** Over the whole text: words (a CJK character is a word), CJK characters, other words and their units. */
  words: number;
  cjk: number;
  latinWords: number;
  latinUnits: number;
  /** Matches of /#|\.\.\.|\u2026/g. */
  hashEllipsis: number;
  /** The rest over the first `analyze` units: code points, ASCII digits, symbols (not \p{L}\p{N}\p{M}\s). */
  chars: number;
  digits: number;
  symbols: number;
  /** Non-blank lines, those starting with a bullet, those ending with an ellipsis. */
  lines: number;
  bulletLines: number;
  ellipsisLines: number;
  /** Share of trimmed non-empty lines (paragraphs) seen before, by count and by units. */
  dupLineFraction: number;
  dupLineUnitFraction: number;
  dupParagraphFraction: number;
  dupParagraphUnitFraction: number;
  /** One value per requested n-gram statistic, in request order. */
  ngrams: number[];
}

/** An n-gram statistic over lower-cased words stripped of edge punctuation (CJK characters are words):
 *  'top': units of the most frequent n-gram times its count (0 unless seen twice), 'dup': units of
 *  words inside any n-gram seen twice; both as a share of all word units. */
export interface NgramStat {
  n: number;
  kind: 'top' | 'dup';
}

const FIXED_STATS = 15;
const KEEP_BYTES = 16 << 20;
let scratch = new Uint8Array(1 << 16);

/** Filter statistics of texts in one native call (parallel over texts). */
export function textStats(texts: readonly string[], analyze: number, ngrams: readonly NgramStat[]): TextStats[] {
  if (!Number.isSafeInteger(analyze) || analyze < 0) throw new PatentGPTError('E_ARGUMENT', `textStats: analyze must be an integer >= 0, got ${analyze}`);
  const m = ngrams.length;
  const spec = new Int32Array(2 * m);
  ngrams.forEach((g, i) => {
    if (!Number.isInteger(g.n) || g.n < 1 || g.n > 20) throw new PatentGPTError('E_ARGUMENT', `textStats: n-gram size must be an integer in [1, 20], got ${g.n}`);
    spec[2 * i] = g.n;
    spec[2 * i + 1] = g.kind === 'top' ? 0 : 1;
  });
  const n = texts.length;
  const cap = utf8Capacity(texts);
  // one buffer reused across calls (the call is synchronous): a fresh one per document kept the
  // GC busy; beyond KEEP_BYTES, a buffer for this call only, so that memory stays bounded
  if (scratch.length < cap && cap <= KEEP_BYTES) scratch = new Uint8Array(Math.min(KEEP_BYTES, Math.max(cap, 2 * scratch.length)));
  const { bytes, offsets } = packTexts(texts, scratch);
  const w = FIXED_STATS + m;
  const out = new Float64Array(n * w);
  addon().textStats(out, bytes, offsets, n, analyze, spec, m);
  const res: TextStats[] = [];
  for (let i = 0; i < n; i++) {
    const o = out.subarray(i * w, (i + 1) * w);
    res.push({
      words: o[0]!, cjk: o[1]!, latinWords: o[2]!, latinUnits: o[3]!, hashEllipsis: o[4]!,
      chars: o[5]!, digits: o[6]!, symbols: o[7]!, lines: o[8]!, bulletLines: o[9]!, ellipsisLines: o[10]!,
      dupLineFraction: o[11]!, dupLineUnitFraction: o[12]!, dupParagraphFraction: o[13]!, dupParagraphUnitFraction: o[14]!,
      ngrams: Array.from(o.subarray(FIXED_STATS)),
    });
  }
  return res;
}
