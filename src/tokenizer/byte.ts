// A byte-level tokenizer: ids 0..255 are the UTF-8 bytes of the text, then three specials.
// It needs no training and no files, so the trainer can run before the BPE tokenizer exists;
// any well-formed string round-trips (a lone UTF-16 surrogate is not valid Unicode and becomes
// U+FFFD, as in every UTF-8 tokenizer).
import { PatentGPTError } from '../errors.js';
import { ByteStreamDecoder, type IncrementalDecoder } from './detokenize.js';

export const BYTE_BOS_ID = 256;
export const BYTE_EOS_ID = 257;
export const BYTE_PAD_ID = 258;
export const BYTE_VOCAB_SIZE = 259;

export interface EncodeOptions {
  /** Prepend BOS. Default false. */
  bos?: boolean;
  /** Append EOS. Default false. */
  eos?: boolean;
}

export interface DecodeOptions {
  /** Drop BOS/EOS/PAD from the text (default true); when false they appear as <s>, </s>, <pad>. */
  skipSpecial?: boolean;
}

export class ByteTokenizer {
  readonly name = 'byte';
  readonly vocabSize = BYTE_VOCAB_SIZE;
  readonly bosId = BYTE_BOS_ID;
  readonly eosId = BYTE_EOS_ID;
  readonly padId = BYTE_PAD_ID;
  private readonly encoder = new TextEncoder();

  encode(text: string, opts: EncodeOptions = {}): Int32Array {
    const bytes = this.encoder.encode(text);
    const extra = (opts.bos ? 1 : 0) + (opts.eos ? 1 : 0);
    const out = new Int32Array(bytes.length + extra);
    let k = 0;
    if (opts.bos) out[k++] = BYTE_BOS_ID;
    out.set(bytes, k);
    k += bytes.length;
    if (opts.eos) out[k] = BYTE_EOS_ID;
    return out;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecial ?? true;
    let text = '';
    let bytes: number[] = [];
    const flush = (): void => {
      if (bytes.length > 0) text += new TextDecoder('utf-8').decode(Uint8Array.from(bytes));
      bytes = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (Number.isInteger(id) && id >= 0 && id < 256) {
        bytes.push(id);
        continue;
      }
      flush();
      if (id === BYTE_BOS_ID) text += skip ? '' : '<s>';
      else if (id === BYTE_EOS_ID) text += skip ? '' : '</s>';
      else if (id === BYTE_PAD_ID) text += skip ? '' : '<pad>';
      else throw new PatentGPTError('E_ARGUMENT', `ByteTokenizer.decode: id ${id} at ${i} is outside [0, ${BYTE_VOCAB_SIZE})`);
    }
    flush();
    return text;
  }

  /** A decoder of a stream of ids, one at a time: its outputs concatenate to decode(ids, opts). */
  decoder(opts: DecodeOptions = {}): IncrementalDecoder {
    const skip = opts.skipSpecial ?? true;
    const specials = new Map([[BYTE_BOS_ID, skip ? '' : '<s>'], [BYTE_EOS_ID, skip ? '' : '</s>'], [BYTE_PAD_ID, skip ? '' : '<pad>']]);
    return new ByteStreamDecoder(specials, BYTE_VOCAB_SIZE);
  }

  /** The printable piece of one id (for debugging and token views). */
  idToPiece(id: number): string {
    if (id === BYTE_BOS_ID) return '<s>';
    if (id === BYTE_EOS_ID) return '</s>';
    if (id === BYTE_PAD_ID) return '<pad>';
    if (!Number.isInteger(id) || id < 0 || id >= 256) throw new PatentGPTError('E_ARGUMENT', `ByteTokenizer: id ${id} is outside [0, ${BYTE_VOCAB_SIZE})`);
    return `<0x${id.toString(16).toUpperCase().padStart(2, '0')}>`;
  }
}
