// TokenizerPool: batch encoding on threads gives exactly the ids of encode(), in order, with the
// native backend (native/cpu/bpe_encode.cpp on the addon's pool) and the worker-thread backend.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SentencePieceTokenizer, TokenizerPool } from '../../src/tokenizer/index.js';
import { dataDir, sampleLines, textDocuments } from './corpus.js';
import { variants } from './variants.js';

const tok = SentencePieceTokenizer.llama2();
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'tokenizer-llama2.json'), 'utf8')) as {
  encodes: { text?: string }[];
};
// The edge cases (lone surrogates, emoji, runs of spaces, control characters, long words) and IP text.
const edge = fixture.encodes.flatMap((e) => (e.text === undefined ? [] : [e.text]));
const data = dataDir();
const texts = [...edge, ...(data ? textDocuments(data).flatMap((d) => sampleLines(d, 1500, 3)) : [])];
texts.push('', 'Hello, world!', '专利法第二十二条', ' \t\n😀\ud800', 'x'.repeat(100_000), '  a  b  ', '▁▁ ▁');

function expectSame(got: Int32Array[], want: (t: string) => Int32Array, what: string): void {
  expect(got.length).toBe(texts.length);
  texts.forEach((t, i) => expect(Array.from(got[i]!), `${what}: ${JSON.stringify(t.slice(0, 60))}`).toEqual(Array.from(want(t))));
}

describe('TokenizerPool', () => {
  it('native (default for LLaMA-2) on 1 and 2 threads: the ids of encode(), bos/eos included', async () => {
    for (const threads of [1, 2]) {
      await using pool = new TokenizerPool(tok, { threads });
      expect(pool.backend).toBe('native');
      for (const opts of [{}, { bos: true, eos: true }]) expectSame(await pool.encodeBatch(texts, opts), (t) => tok.encode(t, opts), `native ${threads}`);
      expect(await pool.encodeBatch([])).toEqual([]);
    }
  });

  it('native on models without byte fallback, with remove_extra_whitespaces, without dummy prefix', async () => {
    for (const [name, model] of variants()) {
      const t = new SentencePieceTokenizer(model);
      await using pool = new TokenizerPool(t, { threads: 2 });
      if (name === 'user-defined pieces' || name === 'UNUSED pieces') {
        expect(pool.backend, name).toBe('workers'); // the TS encoder handles these
        expect(() => new TokenizerPool(t, { backend: 'native' })).toThrow(/native backend cannot encode USER_DEFINED or UNUSED/);
        continue;
      }
      expect(pool.backend).toBe('native');
      expectSame(await pool.encodeBatch(texts), (s) => t.encode(s), name);
    }
  });

  it('workers backend on 2 threads: the ids of encode(); bad input refused', async () => {
    await using pool = new TokenizerPool(tok, { threads: 2, backend: 'workers' });
    expectSame(await pool.encodeBatch(texts, { bos: true }), (t) => tok.encode(t, { bos: true }), 'workers');
    await expect(pool.encodeBatch([1 as unknown as string])).rejects.toThrow(/array of strings/);
    expect(() => new TokenizerPool(tok, { threads: 0 })).toThrow(/threads/);
    expect(() => new TokenizerPool(tok, { backend: 'gpu' as 'native' })).toThrow(/backend/);
  }, 60_000);
});
