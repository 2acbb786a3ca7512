// Random inputs: the fast encoder (segments, cache, linear scan) equals the reference encoder
// (one priority queue over the whole text, as bpe_model.cc), decode inverts encode, bytes never crash.
import { describe, expect, it } from 'vitest';
import { decodeUtf8, SentencePieceTokenizer } from '../../src/tokenizer/index.js';
import { firstDifference, wellFormed } from './corpus.js';

const tok = SentencePieceTokenizer.llama2();

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

const alphabets = [
  [...'abcdefghijklmnopqrstuvwxyz '],
  [...'ee  eeee   ththe the there'],
  [...'0123456789.,-/ '],
  [...'的是在不了有和人这中大为上个国我以要他专利法第条款项'],
  ['\t', '\n', '\r', ' ', ' ', '\u3000', '\u00a0', '\u2581'],
  ['😀', '👍', '\u{1F3FD}', '\u200d', 'e', '\u0301', '\u0308', 'ж', 'λ', 'ß', 'ﬁ', '\ufeff', '\ufffd', '\0', '\ud800', '\udfff'],
];

describe('random text', () => {
  it('encode equals the reference encoder; decode inverts encode', () => {
    const r = rng(2404);
    for (let k = 0; k < 3000; k++) {
      const letters = r(4) === 0 ? alphabets.flat() : alphabets[r(alphabets.length)]!;
      const n = [1, 2, 3, 7, 20, 60, 200][r(7)]!;
      const s = Array.from({ length: n }, () => letters[r(letters.length)]).join('');
      const ids = tok.encode(s);
      expect(firstDifference(ids, tok.encodeReference(s)), JSON.stringify(s)).toBe(-1);
      if (!s.includes('\u2581')) expect(tok.decode(ids), JSON.stringify(s)).toBe(wellFormed(s));
    }
  });

  it('long runs take the priority queue and agree', () => {
    for (const s of ['a'.repeat(20_000), ' '.repeat(5_000), 'ab '.repeat(3_000), '的'.repeat(4_000), 'the'.repeat(2_000)]) {
      const t0 = performance.now();
      const ids = tok.encode(s);
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(firstDifference(ids, tok.encodeReference(s))).toBe(-1);
      expect(tok.decode(ids)).toBe(s);
    }
  });

  it('encodeBatch is encode of each; repeated encodes (cached) agree', () => {
    const texts = ['one line', '第二行', '', '  spaced  out  ', 'one line'];
    const batch = tok.encodeBatch(texts, { bos: true });
    texts.forEach((t, i) => expect(Array.from(batch[i]!)).toEqual(Array.from(tok.encode(t, { bos: true }))));
    tok.clearCache();
    texts.forEach((t, i) => expect(Array.from(batch[i]!)).toEqual(Array.from(tok.encode(t, { bos: true }))));
  });
});

describe('bytes', () => {
  it('random bytes never crash and read as sentencepiece reads them', () => {
    const r = rng(99);
    for (let k = 0; k < 2000; k++) {
      const b = Uint8Array.from({ length: 1 + r(40) }, () => (r(3) === 0 ? 0x80 + r(64) : r(3) === 0 ? 0xc0 + r(64) : r(256)));
      const ids = tok.encode(b);
      expect(Array.from(ids)).toEqual(Array.from(tok.encode(decodeUtf8(b))));
      expect(typeof tok.decode(ids)).toBe('string');
    }
  });

  it('each byte that starts no valid character is one U+FFFD', () => {
    const cases: [number[], string][] = [
      [[0xe2, 0x82], '\ufffd\ufffd'], // truncated 3-byte sequence: two replacements (TextDecoder gives one)
      [[0xe2, 0x82, 0xac], '€'],
      [[0xc0, 0xaf], '\ufffd\ufffd'], // overlong '/'
      [[0xed, 0xa0, 0x80], '\ufffd\ufffd\ufffd'], // an encoded surrogate
      [[0xf4, 0x90, 0x80, 0x80], '\ufffd\ufffd\ufffd\ufffd'], // above U+10FFFF
      [[0xef, 0xbb, 0xbf, 0x61], '\ufeffa'], // a BOM is a character, kept
      [[0x61, 0xff, 0x62], 'a\ufffdb'],
    ];
    for (const [bytes, text] of cases) expect(decodeUtf8(Uint8Array.from(bytes)), JSON.stringify(bytes)).toBe(text);
  });

  it('random id sequences decode without error', () => {
    const r = rng(5);
    for (let k = 0; k < 2000; k++) {
      const ids = Array.from({ length: 1 + r(20) }, () => (r(2) ? r(259) : r(tok.vocabSize)));
      expect(typeof tok.decode(ids)).toBe('string');
    }
  });
});
