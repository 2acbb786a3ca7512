// TokenizerPool: batch encoding on worker threads gives exactly the ids of encode(), in order.
import { describe, expect, it } from 'vitest';
import { SentencePieceTokenizer, TokenizerPool } from '../../src/tokenizer/index.js';
import { dataDir, sampleLines, textDocuments } from './corpus.js';

describe('TokenizerPool', () => {
  it('encodes a batch on 2 threads with the ids of encode(), bos/eos included; refuses bad input', async () => {
    const tok = SentencePieceTokenizer.llama2();
    const data = dataDir();
    const texts = data ? textDocuments(data).flatMap((d) => sampleLines(d, 1500, 3)) : [];
    texts.push('', 'Hello, world!', '专利法第二十二条', ' \t\n😀\ud800', 'x'.repeat(100_000));
    await using pool = new TokenizerPool(tok, { threads: 2 });
    for (const opts of [{}, { bos: true, eos: true }]) {
      const got = await pool.encodeBatch(texts, opts);
      expect(got.length).toBe(texts.length);
      texts.forEach((t, i) => expect(Array.from(got[i]!), t.slice(0, 60)).toEqual(Array.from(tok.encode(t, opts))));
    }
    expect(await pool.encodeBatch([])).toEqual([]);
    await expect(pool.encodeBatch([1 as unknown as string])).rejects.toThrow(/array of strings/);
    expect(() => new TokenizerPool(tok, { threads: 0 })).toThrow(/threads/);
  }, 60_000);
});
