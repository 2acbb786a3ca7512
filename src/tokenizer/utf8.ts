// UTF-8 as SentencePiece reads it. Its normalizer and its decoder of byte pieces take one
// character at a time with util.cc's DecodeUTF8: a well-formed sequence (no overlong form, no
// surrogate, nothing above U+10FFFF) is one character; anything else is U+FFFD that consumes
// exactly one byte. So b'\xE2\x82' gives two U+FFFD where TextDecoder gives one.

const fatalDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Length of the valid UTF-8 character at bytes[i..end), or 0 when it is malformed there. */
export function validCharLength(bytes: Uint8Array, i: number, end: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0x80) return 1;
  const len = end - i;
  if (len >= 2 && (b0 & 0xe0) === 0xc0) {
    const b1 = bytes[i + 1]!;
    const cp = ((b0 & 0x1f) << 6) | (b1 & 0x3f);
    return (b1 & 0xc0) === 0x80 && cp >= 0x80 ? 2 : 0;
  }
  if (len >= 3 && (b0 & 0xf0) === 0xe0) {
    const b1 = bytes[i + 1]!;
    const b2 = bytes[i + 2]!;
    const cp = ((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f);
    return (b1 & 0xc0) === 0x80 && (b2 & 0xc0) === 0x80 && cp >= 0x800 && (cp < 0xd800 || cp >= 0xe000) ? 3 : 0;
  }
  if (len >= 4 && (b0 & 0xf8) === 0xf0) {
    const b1 = bytes[i + 1]!;
    const b2 = bytes[i + 2]!;
    const b3 = bytes[i + 3]!;
    const cp = ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f);
    return (b1 & 0xc0) === 0x80 && (b2 & 0xc0) === 0x80 && (b3 & 0xc0) === 0x80 && cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
  }
  return 0;
}

/** Decodes bytes[start..end) with one U+FFFD for each byte that does not start a valid character. */
export function decodeUtf8(bytes: Uint8Array, start = 0, end = bytes.length): string {
  const view = start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
  try {
    return fatalDecoder.decode(view);
  } catch {
    // Malformed somewhere: go character by character, decoding valid runs in bulk.
  }
  let out = '';
  let runStart = start;
  let i = start;
  while (i < end) {
    const n = validCharLength(bytes, i, end);
    if (n > 0) {
      i += n;
      continue;
    }
    if (i > runStart) out += fatalDecoder.decode(bytes.subarray(runStart, i));
    out += '\ufffd';
    i += 1;
    runStart = i;
  }
  if (end > runStart) out += fatalDecoder.decode(bytes.subarray(runStart, end));
  return out;
}

/** UTF-8 of a string; lone surrogates become U+FFFD (EF BF BD), as TextEncoder does. */
export function encodeUtf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Number of UTF-8 bytes of a string (lone surrogates count as the 3 bytes of U+FFFD). */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}
