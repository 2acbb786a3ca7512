// Export to Hugging Face's tokenizer.json (the `tokenizers` library, transformers'
// PreTrainedTokenizerFast, @huggingface/tokenizers on npm), built to give sentencepiece's ids.
//
// How SentencePiece BPE maps onto the format, and where it cannot:
// - sentencepiece merges the adjacent pair whose concatenation is the best-scored piece; HF BPE
//   merges the pair of lowest rank in a merges list. Listing, for every piece, each split into two
//   pieces, ranked by the piece's score, gives the same merges (ties: leftmost in both).
// - Pieces with equal scores are the exception: LLaMA-2's pieces made only of '▁' all score -1e9,
//   and sentencepiece then takes the leftmost pair whatever it makes. Ranking longer runs first
//   reproduces that (the leftmost run keeps growing, as in sentencepiece) when every run length
//   up to the longest is a piece, as in LLaMA-2.
// - The dummy prefix: a Prepend('▁') normalizer adds it to every text, as sentencepiece does, even
//   one that starts with a space. The Metaspace pre-tokenizer (prepend_scheme "first", what
//   transformers writes) skips it when the text starts with a space, which sentencepiece does not.
//   Prepend, however, runs on every piece of text between special tokens.
// - Forced differences (measured in test/tokenizer/hf.test.ts and the README): a character that is
//   no piece of its own but occurs inside a longer piece merges in sentencepiece, while HF turns it
//   into byte pieces at once (it has no id to merge with); literal "<s>", "</s>", "<unk>" in the
//   text are special tokens for HF and plain characters for sentencepiece.
import { join } from 'node:path';
import { PatentGPTError } from '../errors.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { PieceType, type SentencePieceModel } from './model.js';
import { SentencePieceTokenizer, SPACE_SYMBOL } from './sentencepiece.js';

export interface HfExportOptions {
  /**
   * How the dummy-prefix '▁' is added: 'normalizer' (Prepend, exact on text that starts with a
   * space; the default) or 'metaspace' (the pre-tokenizer transformers writes, prepend_scheme
   * "first", split false).
   */
  prefix?: 'normalizer' | 'metaspace';
  /** Take a whole text that is one piece without merging (HF's ignore_merges; default false). */
  ignoreMerges?: boolean;
  /** Add BOS in the post-processor (transformers' add_special_tokens=True), as LLaMA-2's does. Default true. */
  addBos?: boolean;
}

/** A tokenizer.json object (serialize with JSON.stringify). */
export type HfTokenizerJson = Record<string, unknown>;

function modelOf(t: SentencePieceTokenizer | SentencePieceModel): SentencePieceModel {
  return t instanceof SentencePieceTokenizer ? t.model : t;
}

const isSpaceRun = (p: string): boolean => p.length > 0 && [...p].every((c) => c === SPACE_SYMBOL);

/**
 * The merges list: every split of every mergeable piece into two mergeable pieces, ranked by the
 * piece's score (higher first); pieces of equal score by '▁' run length (longer first), then id.
 */
export function hfMerges(model: SentencePieceModel): [string, string][] {
  const ids = new Map<string, number>();
  model.pieces.forEach((p, id) => {
    if (p.type === PieceType.NORMAL || p.type === PieceType.USER_DEFINED) ids.set(p.piece, id);
  });
  const order = [...ids.values()].filter((id) => [...model.pieces[id]!.piece].length > 1);
  const runLength = (id: number): number => (isSpaceRun(model.pieces[id]!.piece) ? model.pieces[id]!.piece.length : 0);
  order.sort((a, b) => model.pieces[b]!.score - model.pieces[a]!.score || runLength(b) - runLength(a) || a - b);
  const merges: [string, string][] = [];
  for (const id of order) {
    const piece = model.pieces[id]!.piece;
    for (let k = piece.codePointAt(0)! >= 0x10000 ? 2 : 1; k < piece.length; k += piece.codePointAt(k)! >= 0x10000 ? 2 : 1) {
      const left = piece.slice(0, k);
      const right = piece.slice(k);
      if (ids.has(left) && ids.has(right)) merges.push([left, right]);
    }
  }
  return merges;
}

/** The tokenizer.json of a SentencePiece BPE tokenizer (see the file comment for what differs). */
export function toHfTokenizerJson(tokenizer: SentencePieceTokenizer | SentencePieceModel, options: HfExportOptions = {}): HfTokenizerJson {
  const model = modelOf(tokenizer);
  const { prefix = 'normalizer', ignoreMerges = false, addBos = true } = options;
  if (prefix !== 'normalizer' && prefix !== 'metaspace') {
    throw new PatentGPTError('E_ARGUMENT', `toHfTokenizerJson: prefix must be 'normalizer' or 'metaspace', got ${String(prefix)}`);
  }
  const t = model.trainerSpec;
  const n = model.normalizerSpec;
  if (t.modelType !== 'BPE') throw new PatentGPTError('E_UNSUPPORTED', `toHfTokenizerJson: only BPE models export (this one is ${t.modelType})`);
  if (n.precompiledCharsmap.length > 0 || n.removeExtraWhitespaces || !n.escapeWhitespaces || t.treatWhitespaceAsSuffix) {
    throw new PatentGPTError(
      'E_UNSUPPORTED',
      'toHfTokenizerJson: only the identity normalizer with escaped whitespace and no removal of extra whitespace (as LLaMA-2) exports',
    );
  }
  const unused = model.pieces.findIndex((p) => p.type === PieceType.UNUSED);
  if (unused >= 0) throw new PatentGPTError('E_UNSUPPORTED', `toHfTokenizerJson: piece ${unused} is UNUSED, which tokenizer.json cannot express`);

  const vocab: Record<string, number> = {};
  model.pieces.forEach((p, id) => (vocab[p.piece] = id));
  const added = model.pieces
    .map((p, id) => ({ p, id }))
    .filter(({ p }) => p.type === PieceType.CONTROL || p.type === PieceType.UNKNOWN || p.type === PieceType.USER_DEFINED)
    .map(({ p, id }) => ({
      id,
      content: p.piece,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: p.type === PieceType.USER_DEFINED,
      special: p.type !== PieceType.USER_DEFINED,
    }));
  const replaceSpace = { type: 'Replace', pattern: { String: ' ' }, content: SPACE_SYMBOL };
  const normalizer =
    prefix === 'metaspace'
      ? null
      : { type: 'Sequence', normalizers: [...(n.addDummyPrefix ? [{ type: 'Prepend', prepend: SPACE_SYMBOL }] : []), replaceSpace] };
  const preTokenizer =
    prefix === 'metaspace'
      ? { type: 'Metaspace', replacement: SPACE_SYMBOL, prepend_scheme: n.addDummyPrefix ? 'first' : 'never', split: false }
      : null;
  const bos = t.bosId >= 0 && addBos ? model.pieces[t.bosId]!.piece : null;
  const seq = (id: 'A' | 'B', typeId: number): unknown => ({ Sequence: { id, type_id: typeId } });
  const special = (typeId: number): unknown[] => (bos ? [{ SpecialToken: { id: bos, type_id: typeId } }] : []);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer,
    pre_tokenizer: preTokenizer,
    post_processor: {
      type: 'TemplateProcessing',
      single: [...special(0), seq('A', 0)],
      pair: [...special(0), seq('A', 0), ...special(1), seq('B', 1)],
      special_tokens: bos ? { [bos]: { id: bos, ids: [t.bosId], tokens: [bos] } } : {},
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_SYMBOL }, content: ' ' },
        ...(t.byteFallback ? [{ type: 'ByteFallback' }] : []),
        { type: 'Fuse' },
        ...(n.addDummyPrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: model.pieces[t.unkId]!.piece,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: t.byteFallback,
      ignore_merges: ignoreMerges,
      vocab,
      merges: hfMerges(model),
    },
  };
}

/** tokenizer_config.json for transformers' AutoTokenizer (a plain fast tokenizer, no conversion). */
export function hfTokenizerConfig(tokenizer: SentencePieceTokenizer | SentencePieceModel, options: HfExportOptions = {}): Record<string, unknown> {
  const model = modelOf(tokenizer);
  const t = model.trainerSpec;
  const piece = (id: number): string | null => (id >= 0 ? model.pieces[id]!.piece : null);
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: piece(t.bosId),
    eos_token: piece(t.eosId),
    unk_token: piece(t.unkId),
    pad_token: piece(t.padId),
    add_bos_token: options.addBos ?? true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: 1e30,
  };
}

/** Writes tokenizer.json and tokenizer_config.json into `dir` (atomically); returns their paths. */
export function exportHfTokenizer(tokenizer: SentencePieceTokenizer | SentencePieceModel, dir: string, options: HfExportOptions = {}): string[] {
  const json = join(dir, 'tokenizer.json');
  const config = join(dir, 'tokenizer_config.json');
  writeFileAtomicSync(json, JSON.stringify(toHfTokenizerJson(tokenizer, options)));
  writeFileAtomicSync(config, JSON.stringify(hfTokenizerConfig(tokenizer, options), null, 2) + '\n');
  return [json, config];
}
