// Typed access to the native text routines (native/cpu/bpe_train.cpp) for src/tokenizer.
import { addon, type NativeBpeTrainer } from './addon.js';

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
