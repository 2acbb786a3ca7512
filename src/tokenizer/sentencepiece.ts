// SentencePieceTokenizer: encode and decode with exactly the semantics of sentencepiece's
// SentencePieceProcessor for a BPE tokenizer.model (LLaMA-2's above all).
//
// encode: text -> normalizer (normalizer.cc) -> BPE (bpe.ts) -> ids, optional BOS/EOS.
//   A JS string is taken as its UTF-8 (TextEncoder: lone surrogates become U+FFFD); bytes are
//   read as sentencepiece reads them (each byte that starts no valid character becomes U+FFFD).
// decode: ids -> pieces; control pieces vanish, unk shows as unk_surface, runs of <0xNN> pieces
//   are reassembled into UTF-8, '▁' becomes ' ', and the dummy-prefix space of the first piece
//   is dropped (sentencepiece_processor.cc's Decode).
import { readFileSync } from 'node:fs';
import { PatentGPTError } from '../errors.js';
import { BpeModel, IdBuffer } from './bpe.js';
import { decodeModelProto, encodeModelProto, PieceType, type NormalizerSpec, type Piece, type SentencePieceModel } from './model.js';
import { PieceDecoder, type IncrementalDecoder } from './detokenize.js';
import { llama2Model } from './llama2.js';
import { decodeUtf8 } from './utf8.js';

/** U+2581, SentencePiece's visible space. */
export const SPACE_SYMBOL = '\u2581';

export interface EncodeOptions {
  /** Prepend the BOS id (default false, as sentencepiece's encode). */
  bos?: boolean;
  /** Append the EOS id (default false). */
  eos?: boolean;
}

function supportError(what: string): PatentGPTError {
  return new PatentGPTError('E_UNSUPPORTED', what);
}

// ES2024 string methods (Node >= 20); the lib setting of tsconfig stops at ES2023.
interface WellFormed {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

/** The identity normalizer of normalizer.cc: whitespace handling only (the trainer uses it too). */
export function normalizeText(text: string, spec: NormalizerSpec): string {
  let t = (text as unknown as WellFormed).isWellFormed() ? text : (text as unknown as WellFormed).toWellFormed();
  if (spec.removeExtraWhitespaces) {
    // Leading spaces go, runs of spaces become one; trailing spaces go below (after escaping).
    t = t.replace(/^ +/, '').replace(/ {2,}/g, ' ');
  }
  if (t.length === 0) return '';
  const space = spec.escapeWhitespaces ? SPACE_SYMBOL : ' ';
  if (spec.escapeWhitespaces) t = t.replaceAll(' ', SPACE_SYMBOL);
  if (spec.removeExtraWhitespaces) {
    let end = t.length;
    while (end > 0 && t.startsWith(space, end - space.length)) end -= space.length;
    t = t.slice(0, end);
  }
  return spec.addDummyPrefix ? space + t : t;
}

export class SentencePieceTokenizer {
  /** What it was made from: a file path, 'llama2', or 'sentencepiece' (token shards record it). */
  readonly name: string;
  readonly model: SentencePieceModel;
  private readonly pieces: readonly Piece[];
  private readonly bpe: BpeModel | null;
  private readonly unsupported: string | null;
  private readonly pieceIds = new Map<string, number>();
  /** Decoded text of each piece ('▁' as ' '), and the same without a leading '▁' (for the first). */
  private readonly surface: string[];
  private readonly surfaceBos: (string | null)[];
  private readonly byteValue: Int16Array;
  private scratch = new IdBuffer(1024);

  constructor(model: SentencePieceModel, name = 'sentencepiece') {
    this.name = name;
    this.model = model;
    this.pieces = model.pieces;
    const t = model.trainerSpec;
    const n = model.normalizerSpec;
    if (t.modelType !== 'BPE') {
      this.unsupported = `encoding with a ${t.modelType} model is not supported (only BPE; LLaMA-2's is BPE)`;
    } else if (n.precompiledCharsmap.length > 0) {
      this.unsupported = `the normalizer "${n.name}" with a precompiled character map is not supported (only identity, as LLaMA-2 has)`;
    } else if (t.treatWhitespaceAsSuffix) {
      this.unsupported = 'treat_whitespace_as_suffix models are not supported';
    } else {
      this.unsupported = null;
    }
    this.bpe = this.unsupported ? null : new BpeModel({ pieces: model.pieces, unkId: t.unkId, byteFallback: t.byteFallback });
    for (let id = 0; id < this.pieces.length; id++) this.pieceIds.set(this.pieces[id]!.piece, id);
    // PieceToId looks at reserved pieces before the others; with unique pieces the order is moot.
    this.surface = new Array<string>(this.pieces.length);
    this.surfaceBos = new Array<string | null>(this.pieces.length);
    this.byteValue = new Int16Array(this.pieces.length).fill(-1);
    const stripFirst = n.addDummyPrefix || n.removeExtraWhitespaces;
    for (let id = 0; id < this.pieces.length; id++) {
      const p = this.pieces[id]!;
      if (p.type === PieceType.BYTE) {
        this.byteValue[id] = parseInt(p.piece.slice(3, 5), 16);
        this.surface[id] = '';
        this.surfaceBos[id] = null;
      } else if (p.type === PieceType.CONTROL) {
        this.surface[id] = '';
        this.surfaceBos[id] = null;
      } else if (p.type === PieceType.UNKNOWN) {
        this.surface[id] = t.unkSurface;
        this.surfaceBos[id] = null;
      } else {
        this.surface[id] = p.piece.replaceAll(SPACE_SYMBOL, ' ');
        this.surfaceBos[id] =
          stripFirst && p.piece.startsWith(SPACE_SYMBOL) ? p.piece.slice(SPACE_SYMBOL.length).replaceAll(SPACE_SYMBOL, ' ') : null;
      }
    }
  }

  /** Loads a tokenizer.model from a path or from its bytes. */
  static load(source: string | Uint8Array): SentencePieceTokenizer {
    let bytes: Uint8Array;
    let what: string;
    if (typeof source === 'string') {
      what = source;
      try {
        bytes = readFileSync(source);
      } catch (e) {
        throw new PatentGPTError('E_ARGUMENT', `cannot read tokenizer model ${source}: ${(e as Error).message}`);
      }
    } else if (source instanceof Uint8Array) {
      bytes = source;
      what = `the ${source.length} bytes given`;
    } else {
      throw new PatentGPTError('E_ARGUMENT', 'SentencePieceTokenizer.load takes a path or the bytes of a tokenizer.model');
    }
    return new SentencePieceTokenizer(decodeModelProto(bytes, what), typeof source === 'string' ? source : 'sentencepiece');
  }

  /** The tokenizer.model bytes of this tokenizer (a valid ModelProto). */
  serialize(): Uint8Array {
    return encodeModelProto(this.model);
  }

  get vocabSize(): number {
    return this.pieces.length;
  }
  get unkId(): number {
    return this.model.trainerSpec.unkId;
  }
  get bosId(): number {
    return this.model.trainerSpec.bosId;
  }
  get eosId(): number {
    return this.model.trainerSpec.eosId;
  }
  get padId(): number {
    return this.model.trainerSpec.padId;
  }

  idToPiece(id: number): string {
    this.checkId(id, 'idToPiece');
    return this.pieces[id]!.piece;
  }

  /** The id of a piece, or unkId when there is none (as sentencepiece's PieceToId). */
  pieceToId(piece: string): number {
    return this.pieceIds.get(piece) ?? this.unkId;
  }

  pieceType(id: number): PieceType {
    this.checkId(id, 'pieceType');
    return this.pieces[id]!.type;
  }

  score(id: number): number {
    this.checkId(id, 'score');
    return this.pieces[id]!.score;
  }

  private checkId(id: number, op: string): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.pieces.length) {
      throw new PatentGPTError('E_ARGUMENT', `${op}: id ${id} is out of range [0, ${this.pieces.length})`);
    }
  }

  /** The normalized text BPE works on ('▁' for spaces, dummy prefix). */
  normalize(text: string | Uint8Array): string {
    return normalizeText(this.toText(text), this.model.normalizerSpec);
  }

  private toText(text: string | Uint8Array): string {
    if (typeof text === 'string') return text;
    if (text instanceof Uint8Array) return decodeUtf8(text);
    throw new PatentGPTError('E_ARGUMENT', `encode takes a string or UTF-8 bytes, not ${text === null ? 'null' : typeof text}`);
  }

  private encodeInto(text: string | Uint8Array, opts: EncodeOptions, out: IdBuffer): void {
    if (!this.bpe) throw supportError(this.unsupported!);
    if (opts.bos) {
      if (this.bosId < 0) throw new PatentGPTError('E_ARGUMENT', 'encode: bos requested but the model has no BOS piece');
      out.push(this.bosId);
    }
    const mark = out.length;
    this.bpe.encode(normalizeText(this.toText(text), this.model.normalizerSpec), out);
    this.joinUnknowns(out, mark);
    if (opts.eos) {
      if (this.eosId < 0) throw new PatentGPTError('E_ARGUMENT', 'encode: eos requested but the model has no EOS piece');
      out.push(this.eosId);
    }
  }

  /**
   * Without byte fallback, sentencepiece joins a run of unknown symbols into one unk piece
   * (PopulateSentencePieceText), so that decoding can give back the original text.
   */
  private joinUnknowns(out: IdBuffer, from: number): void {
    if (this.model.trainerSpec.byteFallback) return;
    const unk = this.unkId;
    const d = out.data;
    let w = from;
    for (let r = from; r < out.length; r++) {
      if (d[r] === unk && w > from && d[w - 1] === unk) continue;
      d[w++] = d[r]!;
    }
    out.length = w;
  }

  /** Token ids of a text (a string, or UTF-8 bytes). */
  encode(text: string | Uint8Array, opts: EncodeOptions = {}): Int32Array {
    // One growing buffer for all calls (encode never re-enters itself); the result is a copy.
    const out = this.scratch;
    out.length = 0;
    try {
      this.encodeInto(text, opts, out);
      return out.toArray();
    } finally {
      if (out.data.length > 1 << 20) this.scratch = new IdBuffer(1024); // do not hold on to a huge one
    }
  }

  /** Token ids of each text. */
  encodeBatch(texts: readonly (string | Uint8Array)[], opts: EncodeOptions = {}): Int32Array[] {
    return texts.map((t) => this.encode(t, opts));
  }

  /** The pieces of a text's encoding. */
  encodeAsPieces(text: string | Uint8Array, opts: EncodeOptions = {}): string[] {
    return Array.from(this.encode(text, opts), (id) => this.pieces[id]!.piece);
  }

  /**
   * The reference encoder: a direct port of bpe_model.cc over the whole normalized text, with no
   * segmentation and no cache. Slow; for tests of encode().
   */
  encodeReference(text: string | Uint8Array, opts: EncodeOptions = {}): Int32Array {
    if (!this.bpe) throw supportError(this.unsupported!);
    const out = new IdBuffer();
    if (opts.bos) out.push(this.bosId);
    const mark = out.length;
    this.bpe.encodeExact(normalizeText(this.toText(text), this.model.normalizerSpec), out);
    this.joinUnknowns(out, mark);
    if (opts.eos) out.push(this.eosId);
    return out.toArray();
  }

  /** Text of token ids; every id must be in [0, vocabSize). */
  decode(ids: ArrayLike<number>): string {
    let out = '';
    let bosWs = true; // the first piece may still carry the dummy-prefix space
    let bytes: number[] | null = null;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.pieces.length) {
        throw new PatentGPTError('E_ARGUMENT', `decode: id ${id} at position ${i} is out of range [0, ${this.pieces.length})`);
      }
      const b = this.byteValue[id]!;
      if (b >= 0) {
        (bytes ??= []).push(b);
        continue;
      }
      if (bytes) {
        out += decodeUtf8(Uint8Array.from(bytes));
        bytes = null;
        bosWs = false;
      }
      const type = this.pieces[id]!.type;
      if (type === PieceType.CONTROL) continue;
      const stripped = bosWs ? this.surfaceBos[id] : null;
      if (stripped !== null && stripped !== undefined) {
        out += stripped;
        // With remove_extra_whitespaces every leading space goes, so keep stripping while empty.
        if (!this.model.normalizerSpec.removeExtraWhitespaces || stripped.length > 0) bosWs = false;
      } else {
        const s = this.surface[id]!;
        out += s;
        if (s.length > 0) bosWs = false;
      }
    }
    if (bytes) out += decodeUtf8(Uint8Array.from(bytes));
    return out;
  }

  /**
   * A decoder of a stream of ids, one at a time in O(1): its outputs concatenate to decode() of
   * the ids (see detokenize.ts); a character split over byte pieces comes out once whole.
   */
  decoder(): IncrementalDecoder {
    return new PieceDecoder({
      vocabSize: this.pieces.length,
      surface: this.surface,
      surfaceBos: this.surfaceBos,
      byteValue: this.byteValue,
      isControl: (id) => this.pieces[id]!.type === PieceType.CONTROL,
      removeExtraWhitespaces: this.model.normalizerSpec.removeExtraWhitespaces,
    });
  }

  /** Drops the cache of encoded segments (it is bounded; this only frees memory sooner). */
  clearCache(): void {
    this.bpe?.clearCache();
  }

  /**
   * LLaMA-2's tokenizer with no file at hand: the 32,000 pieces come from the npm package
   * llama-tokenizer-js (which embeds LLaMA-2's vocabulary); the scores, types and specs are
   * those of LLaMA-2's tokenizer.model (piece id i >= 259 scores -(i - 259), pieces made only
   * of '▁' score -1e9; 0 is <unk>, 1 and 2 are <s> and </s>, 3..258 are <0x00>..<0xFF>).
   */
  static llama2(): SentencePieceTokenizer {
    return new SentencePieceTokenizer(llama2Model(), 'llama2');
  }
}
