import { describe, expect, it } from 'vitest';
import { BYTE_BOS_ID, BYTE_EOS_ID, BYTE_VOCAB_SIZE, ByteTokenizer } from '../../src/tokenizer/byte.js';

describe('ByteTokenizer', () => {
  const tok = new ByteTokenizer();
  it('round-trips any well-formed string', () => {
    const samples = ['', 'a', 'Claim 1. A method comprising:', '专利权人 — 発明 🚀 \u0000 \n\t', 'é'.repeat(100)];
    let s = '';
    for (let cp = 0; cp < 0x11000; cp += 97) if (cp < 0xd800 || cp > 0xdfff) s += String.fromCodePoint(cp);
    samples.push(s);
    for (const text of samples) {
      const ids = tok.encode(text);
      expect(ids.length).toBe(Buffer.byteLength(text, 'utf8'));
      expect(tok.decode(ids)).toBe(text);
      const wrapped = tok.encode(text, { bos: true, eos: true });
      expect(wrapped[0]).toBe(BYTE_BOS_ID);
      expect(wrapped[wrapped.length - 1]).toBe(BYTE_EOS_ID);
      expect(tok.decode(wrapped)).toBe(text);
    }
  });
  it('renders specials on request and refuses unknown ids', () => {
    expect(tok.vocabSize).toBe(BYTE_VOCAB_SIZE);
    expect(tok.decode(tok.encode('hi', { bos: true, eos: true }), { skipSpecial: false })).toBe('<s>hi</s>');
    expect(() => tok.decode([300])).toThrow(/outside/);
    expect(tok.idToPiece(65)).toBe('<0x41>');
  });
  it('decodes a multi-byte character split by a special as replacement characters, not a crash', () => {
    const ids = [...tok.encode('é')];
    expect(tok.decode([ids[0]!, BYTE_EOS_ID, ids[1]!])).toBe('\uFFFD\uFFFD');
  });
});
