// Typed access to the native SentencePiece BPE encoder (native/cpu/bpe_encode.cpp) for
// src/tokenizer's batch encoding on the addon's thread pool.
import { addon, type NativeBpeEncoder } from '../native/loader.js';

export interface BpeEncoderModel {
  pieces: readonly { piece: string; score: number; type: number }[];
  unkId: number;
  byteFallback: boolean;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

const utf8 = new TextEncoder();

export class NativeBpeEncoderHandle {
  private readonly e: NativeBpeEncoder;

  /** Throws (E_ARGUMENT from the addon) for models it cannot encode: USER_DEFINED or UNUSED pieces. */
  constructor(m: BpeEncoderModel) {
    const n = m.pieces.length;
    const bytes = m.pieces.map((p) => utf8.encode(p.piece));
    const offsets = new BigInt64Array(n + 1);
    for (let i = 0; i < n; i++) offsets[i + 1] = offsets[i]! + BigInt(bytes[i]!.length);
    const all = new Uint8Array(Number(offsets[n]));
    bytes.forEach((b, i) => all.set(b, Number(offsets[i])));
    this.e = new (addon().BpeEncoder)(all, offsets, Float32Array.from(m.pieces, (p) => p.score), Int32Array.from(m.pieces, (p) => p.type),
      m.unkId, m.byteFallback, m.addDummyPrefix, m.removeExtraWhitespaces, m.escapeWhitespaces);
  }

  /** Ids of one text (UTF-8, normalized natively), on this thread. */
  encode(text: Uint8Array): Int32Array {
    return this.e.encode(text);
  }

  /**
   * Ids of texts text[offsets[i], offsets[i+1]) on up to `threads` threads of the addon's pool,
   * off the event loop; bosId/eosId -1 for none. ids[offsets'[i], offsets'[i+1]) are text i's.
   */
  encodeBatch(text: Uint8Array, offsets: BigInt64Array, threads: number, bosId: number, eosId: number): Promise<{ ids: Int32Array; offsets: Float64Array }> {
    return this.e.encodeBatch(text, offsets, threads, bosId, eosId);
  }
}
