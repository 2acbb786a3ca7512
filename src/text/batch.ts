// Texts as one UTF-8 byte batch cut by N+1 offsets: the argument form of the addon's text ops
// (minhashSignatures, textStats, BpeEncoder.encodeBatch).
const utf8 = new TextEncoder();

export interface TextBatch {
  /** At least offsets[N] bytes; text i is bytes[offsets[i], offsets[i+1]). */
  bytes: Uint8Array;
  offsets: BigInt64Array;
}

/**
 * Packs strings (UTF-8 through TextEncoder: a lone surrogate becomes U+FFFD, as SentencePiece
 * reads it) and byte arrays as they are. `scratch` holds the bytes when it is large enough.
 */
export function packTexts(texts: readonly (string | Uint8Array)[], scratch?: Uint8Array): TextBatch {
  let cap = 0;
  for (const t of texts) cap += typeof t === 'string' ? t.length * 3 : t.length;
  const bytes = scratch && scratch.length >= cap ? scratch : new Uint8Array(cap);
  const offsets = new BigInt64Array(texts.length + 1);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i]!;
    if (typeof t === 'string') at += utf8.encodeInto(t, bytes.subarray(at)).written;
    else {
      bytes.set(t, at);
      at += t.length;
    }
    offsets[i + 1] = BigInt(at);
  }
  return { bytes, offsets };
}

/** Upper bound of the UTF-8 bytes of texts (3 per UTF-16 unit). */
export function utf8Capacity(texts: readonly string[]): number {
  let cap = 0;
  for (const t of texts) cap += t.length * 3;
  return cap;
}
