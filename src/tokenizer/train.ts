// BPE training with sentencepiece's semantics (spm_train --model_type=bpe
// --normalization_rule_name=identity): lines are read as spm's LoadSentences reads them, the
// character coverage keeps the most frequent characters, the native trainer
// (native/cpu/bpe_train.cpp) counts words and runs the merge loop, and the pieces are written as
// spm writes them: meta pieces (<unk>, <s>, </s>, the 256 byte pieces), merged pieces scored
// -(merge order), then the kept characters.
//
// Same pieces, scores and order as spm_train 0.2.2 with these options (measured by `npm run
// bench -- tokenizer-train`: 20,000 of 20,000 pieces on 8 MB of IP text). Differences, on purpose:
// - input_sentence_size keeps the first N sentences (spm_train with --shuffle_input_sentence=false);
//   spm's default samples N at random.
// - only the identity normalizer (as LLaMA-2's), no user-defined symbols, whitespace as prefix.
import { createReadStream } from 'node:fs';
import { PatentGPTError } from '../errors.js';
import { NativeBpe } from '../text/stats.js';
import { PieceType, type Piece, type SentencePieceModel } from './model.js';
import { llamaTrainerSpec } from './llama2.js';
import { scriptCodes } from './scripts.js';
import { isHeldOut } from './stats.js';
import { normalizeText, SentencePieceTokenizer } from './sentencepiece.js';

export interface BpeTrainOptions {
  /** Pieces in the model, meta pieces included (spm's --vocab_size). */
  vocabSize: number;
  /** Share of character occurrences the kept characters cover (default 0.9995). */
  characterCoverage?: number;
  /** 256 <0xNN> pieces so dropped characters encode as bytes (default true, as LLaMA-2). */
  byteFallback?: boolean;
  /** Longest piece in characters (default 16). */
  maxSentencepieceLength?: number;
  /** Lines longer than this many bytes are skipped (default 4192). */
  maxSentenceLength?: number;
  /** Keep at most this many sentences, the first ones (default 0: all). */
  inputSentenceSize?: number;
  splitByWhitespace?: boolean;
  splitByUnicodeScript?: boolean;
  splitByNumber?: boolean;
  splitDigits?: boolean;
  allowWhitespaceOnlyPieces?: boolean;
  /** Normalizer (identity): default true. */
  addDummyPrefix?: boolean;
  /** Normalizer (identity): default false, as LLaMA-2 (spm's own default is true). */
  removeExtraWhitespaces?: boolean;
  /** Leave out the held-out split, 1 line in N chosen by isHeldOut (stats.ts), to measure on it later (default 0: none). */
  holdOut?: number;
  /** Called while reading (phase 'read', done = sentences) and merging (done/total = pieces). */
  onProgress?: (p: { phase: 'read' | 'merge'; done: number; total: number }) => void;
}

/** Lines of text: file paths, or lines themselves (each string one sentence). */
export type TrainInput = { files: readonly string[] } | { lines: Iterable<string> | AsyncIterable<string> };

export interface BpeTrainStats {
  sentences: number;
  skippedTooLong: number;
  skippedReserved: number;
  uniqueWords: number;
  characters: number;
  keptCharacters: number;
  mergedPieces: number;
  readMs: number;
  mergeMs: number;
}

export interface BpeTrainResult {
  tokenizer: SentencePieceTokenizer;
  model: SentencePieceModel;
  stats: BpeTrainStats;
  /** Frequency of each merged piece when it was chosen (merge order). */
  mergeFreqs: Float64Array;
}

const UNK_CHAR = '\u2585'; // spm's reserved character: lines with it are skipped
const TAB = '\t'; // spm's kUPPBoundaryChar: never in a piece, never kept as a character
const TAB_CP = 0x09;
const BATCH_BYTES = 1 << 20;

function argError(field: string, why: string): PatentGPTError {
  return new PatentGPTError('E_ARGUMENT', `trainBpe: ${field} ${why}`);
}

/** Lines of files split on '\n' only (as std::getline), decoded as UTF-8 (bad bytes -> U+FFFD). */
async function* fileLines(files: readonly string[], maxBytes: number, tooLong: { n: number }): AsyncGenerator<string> {
  const dec = new TextDecoder('utf-8', { ignoreBOM: true }); // a U+FEFF starting a line is text, as for spm
  for (const file of files) {
    let rest: Buffer | null = null;
    const stream = createReadStream(file);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        const buf: Buffer = rest ? Buffer.concat([rest, chunk]) : chunk;
        let start = 0;
        for (let i = buf.indexOf(10, start); i >= 0; i = buf.indexOf(10, start)) {
          if (i - start > maxBytes) tooLong.n++;
          else yield dec.decode(buf.subarray(start, i));
          start = i + 1;
        }
        rest = start < buf.length ? buf.subarray(start) : null;
      }
    } catch (e) {
      throw new PatentGPTError('E_IO', `trainBpe: cannot read ${file}: ${(e as Error).message}`);
    }
    if (rest) {
      if (rest.length > maxBytes) tooLong.n++;
      else yield dec.decode(rest);
    }
  }
}

/** Trains a SentencePiece BPE model; see the file comment for how it relates to spm_train. */
export async function trainBpe(input: TrainInput, options: BpeTrainOptions): Promise<BpeTrainResult> {
  const o = {
    characterCoverage: 0.9995,
    byteFallback: true,
    maxSentencepieceLength: 16,
    maxSentenceLength: 4192,
    inputSentenceSize: 0,
    holdOut: 0,
    splitByWhitespace: true,
    splitByUnicodeScript: true,
    splitByNumber: true,
    splitDigits: false,
    allowWhitespaceOnlyPieces: false,
    addDummyPrefix: true,
    removeExtraWhitespaces: false,
    ...options,
  };
  if (!Number.isInteger(o.vocabSize) || o.vocabSize < 1) throw argError('vocabSize', `must be a positive integer, got ${o.vocabSize}`);
  if (!(o.characterCoverage > 0 && o.characterCoverage <= 1)) throw argError('characterCoverage', `must be in (0, 1], got ${o.characterCoverage}`);
  if (!Number.isInteger(o.maxSentencepieceLength) || o.maxSentencepieceLength < 1 || o.maxSentencepieceLength > 512) {
    throw argError('maxSentencepieceLength', `must be an integer in [1, 512], got ${o.maxSentencepieceLength}`);
  }
  if (!Number.isInteger(o.maxSentenceLength) || o.maxSentenceLength < 1 || o.maxSentenceLength > 65535) {
    throw argError('maxSentenceLength', `must be an integer in [1, 65535] (bytes), got ${o.maxSentenceLength}`);
  }
  if (!Number.isInteger(o.inputSentenceSize) || o.inputSentenceSize < 0) throw argError('inputSentenceSize', `must be an integer >= 0, got ${o.inputSentenceSize}`);
  if (!Number.isInteger(o.holdOut) || o.holdOut < 0 || o.holdOut === 1) throw argError('holdOut', `must be 0 (none) or an integer >= 2, got ${o.holdOut}`);

  const meta: Piece[] = [
    { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
    { piece: '<s>', score: 0, type: PieceType.CONTROL },
    { piece: '</s>', score: 0, type: PieceType.CONTROL },
  ];
  if (o.byteFallback) {
    for (let b = 0; b < 256; b++) meta.push({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0, type: PieceType.BYTE });
  }
  const metaRe = new RegExp(meta.map((p) => p.piece.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  const normalizer = {
    name: 'identity',
    addDummyPrefix: o.addDummyPrefix,
    removeExtraWhitespaces: o.removeExtraWhitespaces,
    escapeWhitespaces: true,
    precompiledCharsmap: new Uint8Array(0),
  };

  // 1. Read, normalize and count words (native), as spm's LoadSentences.
  const t0 = performance.now();
  const bpe = new NativeBpe({ splitByWhitespace: o.splitByWhitespace, allowWhitespaceOnlyPieces: o.allowWhitespaceOnlyPieces });
  const enc = new TextEncoder();
  const tooLong = { n: 0 };
  let reserved = 0;
  let kept = 0;
  let selected = 0; // lines taken for input_sentence_size, counted before normalization as spm does
  let batch: string[] = [];
  let batchLen = 0;
  const flush = (): void => {
    if (batch.length === 0) return;
    bpe.addSentences(enc.encode(batch.join('\n')));
    batch = [];
    batchLen = 0;
    o.onProgress?.({ phase: 'read', done: kept, total: o.inputSentenceSize });
  };
  const lines = 'files' in input ? fileLines(input.files, o.maxSentenceLength, tooLong) : input.lines;
  for await (const raw of lines as AsyncIterable<string>) {
    if (typeof raw !== 'string') throw argError('lines', `must yield strings, got ${typeof raw}`);
    if (!('files' in input) && Buffer.byteLength(raw, 'utf8') > o.maxSentenceLength) {
      tooLong.n++;
      continue;
    }
    if (o.holdOut > 0 && isHeldOut(raw, o.holdOut)) continue;
    if (raw.includes(UNK_CHAR)) {
      reserved++;
      continue;
    }
    // spm (0.2) replaces meta pieces in the normalized text by a tab, its piece boundary: a tab
    // is never kept as a character, so it splits nothing but no piece spans it.
    const normalized = normalizeText(raw, normalizer);
    const s = normalized.includes('<') ? normalized.replace(metaRe, TAB) : normalized;
    selected++;
    if (s.length > 0) {
      batch.push(s.includes('\n') ? s.replaceAll('\n', ' ') : s);
      batchLen += s.length;
      kept++;
      if (batchLen >= BATCH_BYTES) flush();
    }
    if (o.inputSentenceSize > 0 && selected >= o.inputSentenceSize) break;
  }
  flush();
  if (kept === 0) throw argError('input', 'holds no sentences (empty, or every line too long)');

  // 2. Character coverage (float comparison, as spm).
  const { cps, counts } = bpe.charCounts();
  let all = 0;
  for (let i = 0; i < counts.length; i++) all += counts[i]!;
  const coverage = Math.fround(o.characterCoverage);
  let acc = 0;
  const keptChars: number[] = [];
  for (let i = 0; i < cps.length; i++) {
    if (Math.fround(acc / all) >= coverage) break;
    acc += counts[i]!;
    // The tab counts toward coverage but is never kept (spm's piece boundary), so it trains as
    // an unknown character: no piece holds it, and it encodes by byte fallback.
    if (cps[i] !== TAB_CP) keptChars.push(cps[i]!);
  }
  const keptCps = Uint32Array.from(keptChars);
  const n = keptCps.length;
  const readMs = performance.now() - t0;

  const target = o.vocabSize - meta.length - n;
  if (target < 0) {
    throw argError('vocabSize', `${o.vocabSize} is too small: ${meta.length} meta pieces and ${n} characters (coverage ${o.characterCoverage}) need ${meta.length + n}`);
  }

  // 3. Merge loop (native), in chunks for progress.
  const t1 = performance.now();
  const uniqueWords = bpe.uniqueWords;
  bpe.begin(keptCps, scriptCodes(keptCps, o.splitByNumber), {
    maxPieceLength: o.maxSentencepieceLength,
    splitByWhitespace: o.splitByWhitespace,
    splitByUnicodeScript: o.splitByUnicodeScript,
    splitDigits: o.splitDigits,
    allowWhitespaceOnlyPieces: o.allowWhitespaceOnlyPieces,
    reserved: meta.map((p) => p.piece),
  });
  let merged = 0;
  const chunk = Math.max(256, Math.ceil(target / 100));
  while (merged < target) {
    const got = bpe.step(Math.min(chunk, target - merged));
    merged += got;
    o.onProgress?.({ phase: 'merge', done: merged, total: target });
    if (got === 0) break;
  }
  if (merged < target) {
    throw argError('vocabSize', `${o.vocabSize} is too large for this corpus: only ${meta.length + n + merged} pieces can be made; lower it`);
  }
  const { pieces: mergedPieces, freqs } = bpe.pieces(0);
  const mergeMs = performance.now() - t1;

  const pieces: Piece[] = [...meta];
  let order = 0;
  for (const p of mergedPieces) pieces.push({ piece: p, score: -order++, type: PieceType.NORMAL });
  for (let i = 0; i < n; i++) pieces.push({ piece: String.fromCodePoint(keptCps[i]!), score: -order++, type: PieceType.NORMAL });

  const model: SentencePieceModel = {
    pieces,
    trainerSpec: llamaTrainerSpec(pieces.length, o.byteFallback),
    normalizerSpec: normalizer,
    proto: {
      trainer_spec: {
        input_format: 'text',
        character_coverage: o.characterCoverage,
        input_sentence_size: o.inputSentenceSize,
        shuffle_input_sentence: false,
        max_sentencepiece_length: o.maxSentencepieceLength,
        max_sentence_length: o.maxSentenceLength,
        split_by_unicode_script: o.splitByUnicodeScript,
        split_by_number: o.splitByNumber,
        split_by_whitespace: o.splitByWhitespace,
        split_digits: o.splitDigits,
        allow_whitespace_only_pieces: o.allowWhitespaceOnlyPieces,
        vocabulary_output_piece_score: true,
        hard_vocab_limit: true,
      },
      normalizer_spec: {},
    },
  };
  return {
    tokenizer: new SentencePieceTokenizer(model, 'bpe-trained'),
    model,
    stats: {
      sentences: kept,
      skippedTooLong: tooLong.n,
      skippedReserved: reserved,
      uniqueWords,
      characters: cps.length,
      keptCharacters: n,
      mergedPieces: merged,
      readMs,
      mergeMs,
    },
    mergeFreqs: freqs,
  };
}
