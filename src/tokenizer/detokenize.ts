// Incremental detokenization: the text of a stream of token ids, one id at a time, in O(1) work
// per id (vLLM's incremental detokenizer, made exact for our tokenizers).
//
// The contract: after ids t1..tn pushed into a decoder that was first fed a prompt p,
//   push(t1) + ... + push(tn) + pending() === decode(p + t1..tn) minus decode(p)
// and push() never returns text that a later id would change: a UTF-8 character split over
// byte pieces (<0xE4><0xB8><0xAD>) is held back until it completes or can no longer complete,
// so no U+FFFD is emitted for a sequence that later turns out whole. pending() is the text of
// what is held (what decode() would show if the ids ended here); flush() returns it and ends
// the current byte run. (A prompt that ends inside a character has no such difference; its
// character then comes out whole with the output byte that completes it.)
import { PatentGPTError } from '../errors.js';
import { decodeUtf8, validCharLength } from './utf8.js';

export interface IncrementalDecoder {
  /** The text that id adds; '' while it only extends an incomplete character. */
  push(id: number): string;
  /** What decode() would add for the held bytes if the ids ended here (nothing is consumed). */
  pending(): string;
  /** Returns pending() and forgets the held bytes (the end of the stream). */
  flush(): string;
}

/** What a decoder needs of a tokenizer: decode(), and an exact incremental decoder where it has one. */
export interface Detokenizable {
  decode(ids: ArrayLike<number>): string;
  decoder?(): IncrementalDecoder;
}

/**
 * An incremental decoder positioned after `prompt`: the tokenizer's own when it has one (exact,
 * O(1) per id), else a window over decode() as vLLM's detokenize_incrementally.
 */
export function incrementalDecoder(tok: Detokenizable, prompt: ArrayLike<number>): IncrementalDecoder {
  if (typeof tok.decoder === 'function') {
    const d = tok.decoder();
    for (let i = 0; i < prompt.length; i++) d.push(prompt[i]!); // the prompt's text is not ours to emit
    return d;
  }
  return new WindowDecoder(tok, prompt);
}

/** Tokens decoded before the first new one (context for spaces and byte runs), as vLLM. */
const WINDOW_CONTEXT = 5;
/** Tokens held while they add no text or text ending in U+FFFD, before it is emitted anyway (no character spans more). */
const MAX_HELD = 8;

/**
 * vLLM's algorithm for any tokenizer: decode a few tokens of context (prefix) and the same plus
 * the new ones (full); emit full minus prefix once it does not end in U+FFFD, then slide the
 * window. Each push decodes O(window) ids, whatever the output length.
 */
export class WindowDecoder implements IncrementalDecoder {
  readonly #tok: Detokenizable;
  /** The context ids [0, read), then the ids not yet emitted. */
  readonly #ids: number[];
  #read: number;

  constructor(tok: Detokenizable, prompt: ArrayLike<number>) {
    this.#tok = tok;
    const n = prompt.length;
    this.#ids = Array.from({ length: Math.min(n, WINDOW_CONTEXT) }, (_, i) => prompt[n - Math.min(n, WINDOW_CONTEXT) + i]!);
    this.#read = this.#ids.length;
  }

  #diff(): string {
    const prefix = this.#tok.decode(this.#ids.slice(0, this.#read));
    const full = this.#tok.decode(this.#ids);
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }

  push(id: number): string {
    this.#ids.push(id);
    const text = this.#diff();
    // Nothing yet, or a character that may be unfinished: keep the context (a bounded wait).
    if ((text === '' || text.endsWith('\uFFFD')) && this.#ids.length - this.#read < MAX_HELD) return '';
    this.#slide();
    return text;
  }

  pending(): string {
    return this.#diff();
  }

  flush(): string {
    const text = this.#diff();
    this.#slide();
    return text;
  }

  /** The emitted ids become the next context; older ones go (the array stays O(window)). */
  #slide(): void {
    this.#ids.splice(0, this.#read);
    this.#read = this.#ids.length;
  }
}

/** Expected length of a UTF-8 sequence from its first byte (1 for ASCII and for bytes that start none). */
function sequenceLength(b: number): number {
  if ((b & 0xe0) === 0xc0) return 2;
  if ((b & 0xf0) === 0xe0) return 3;
  if ((b & 0xf8) === 0xf0) return 4;
  return 1;
}

/** What SentencePieceTokenizer.decode knows of each piece (see there). */
export interface PieceTable {
  readonly vocabSize: number;
  /** Text of a piece ('▁' as ' '); '' for control and byte pieces. */
  readonly surface: readonly string[];
  /** The same without the dummy-prefix space, for the first piece; null when nothing to strip. */
  readonly surfaceBos: readonly (string | null)[];
  /** Byte value of a <0xNN> piece, else -1. */
  readonly byteValue: Int16Array;
  readonly isControl: (id: number) => boolean;
  readonly removeExtraWhitespaces: boolean;
}

/**
 * SentencePiece decoding, one piece at a time: the state is whether the dummy-prefix space is
 * still to strip and the bytes of an unfinished character (at most 3). Bytes are read as
 * sentencepiece's DecodeUTF8 (utf8.ts): a character is emitted once its bytes are all there, a
 * byte that cannot start or continue one becomes U+FFFD at once.
 */
export class PieceDecoder implements IncrementalDecoder {
  readonly #t: PieceTable;
  #bosWs = true;
  readonly #bytes = new Uint8Array(4);
  #held = 0;

  constructor(table: PieceTable) {
    this.#t = table;
  }

  push(id: number): string {
    const t = this.#t;
    if (!Number.isInteger(id) || id < 0 || id >= t.vocabSize)
      throw new PatentGPTError('E_ARGUMENT', `decode: id ${id} is out of range [0, ${t.vocabSize})`);
    const b = t.byteValue[id]!;
    if (b >= 0) {
      this.#bosWs = false; // decode() ends stripping when the byte run ends; no piece can come between
      this.#bytes[this.#held++] = b;
      return this.#drain();
    }
    let out = this.flush();
    if (t.isControl(id)) return out;
    const stripped = this.#bosWs ? t.surfaceBos[id] : null;
    if (stripped !== null && stripped !== undefined) {
      out += stripped;
      if (!t.removeExtraWhitespaces || stripped.length > 0) this.#bosWs = false;
    } else {
      const s = t.surface[id]!;
      out += s;
      if (s.length > 0) this.#bosWs = false;
    }
    return out;
  }

  /** Emits the held bytes' leading characters that no later byte can change. */
  #drain(): string {
    let out = '';
    const bytes = this.#bytes;
    while (this.#held > 0) {
      const need = sequenceLength(bytes[0]!);
      let n: number;
      if (need === 1) n = bytes[0]! < 0x80 ? 1 : 0;
      else if (this.#held < need) {
        let canGrow = true;
        for (let i = 1; i < this.#held; i++) if ((bytes[i]! & 0xc0) !== 0x80) canGrow = false;
        if (canGrow) break; // wait for the rest of the character
        n = 0;
      } else n = validCharLength(bytes, 0, need);
      out += n > 0 ? decodeUtf8(bytes, 0, n) : '\uFFFD';
      const used = n > 0 ? n : 1;
      bytes.copyWithin(0, used, this.#held);
      this.#held -= used;
    }
    return out;
  }

  pending(): string {
    return this.#held > 0 ? decodeUtf8(this.#bytes, 0, this.#held) : '';
  }

  flush(): string {
    const out = this.pending();
    this.#held = 0;
    return out;
  }
}

/**
 * ByteTokenizer decoding, one id at a time: a streaming TextDecoder gives exactly what decode()'s
 * one-shot TextDecoder gives per run of bytes (WHATWG: a maximal invalid subpart is one U+FFFD; a
 * BOM at the start of a run is dropped); specials end the run. The WHATWG state machine is
 * mirrored only to know whether a character is unfinished (pending() is then one U+FFFD).
 */
export class ByteStreamDecoder implements IncrementalDecoder {
  readonly #specials: ReadonlyMap<number, string>;
  readonly #vocabSize: number;
  #td = new TextDecoder('utf-8');
  #needed = 0;
  #lower = 0x80;
  #upper = 0xbf;

  /** specials: id -> its text (already '' when special tokens are skipped). */
  constructor(specials: ReadonlyMap<number, string>, vocabSize: number) {
    this.#specials = specials;
    this.#vocabSize = vocabSize;
  }

  push(id: number): string {
    if (Number.isInteger(id) && id >= 0 && id < 256) {
      this.#track(id);
      return this.#td.decode(Uint8Array.of(id), { stream: true });
    }
    const s = this.#specials.get(id);
    if (s === undefined) throw new PatentGPTError('E_ARGUMENT', `ByteTokenizer.decode: id ${id} is outside [0, ${this.#vocabSize})`);
    return this.flush() + s;
  }

  /** WHATWG's UTF-8 decoder states (Encoding Standard 4.1), enough to know if bytes are held. */
  #track(b: number): void {
    if (this.#needed > 0) {
      if (b >= this.#lower && b <= this.#upper) {
        this.#lower = 0x80;
        this.#upper = 0xbf;
        this.#needed--;
        return;
      }
      this.#needed = 0; // an error: the held bytes become U+FFFD and b starts afresh
      this.#lower = 0x80;
      this.#upper = 0xbf;
    }
    if (b >= 0xc2 && b <= 0xdf) this.#needed = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      if (b === 0xe0) this.#lower = 0xa0;
      if (b === 0xed) this.#upper = 0x9f;
      this.#needed = 2;
    } else if (b >= 0xf0 && b <= 0xf4) {
      if (b === 0xf0) this.#lower = 0x90;
      if (b === 0xf4) this.#upper = 0x8f;
      this.#needed = 3;
    }
  }

  pending(): string {
    return this.#needed > 0 ? '\uFFFD' : '';
  }

  flush(): string {
    const out = this.#td.decode(); // ends the run (and resets the BOM state, as a fresh decoder)
    this.#needed = 0;
    this.#lower = 0x80;
    this.#upper = 0xbf;
    return out;
  }
}
