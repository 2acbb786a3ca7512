// The SFT batch stream: every row once per epoch in a seeded order, the same batches for the
// same seed, resume from a position gives exactly the batches that came next, ranks split each
// global batch, and a position from other data is refused.
import { describe, expect, it } from 'vitest';
import { buildExample, IGNORE_INDEX, llama2ChatRenderer, SftBatchStream, sftEvalBatches, type SftExample } from '../../src/data/sft/index.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/index.js';

const tok = SentencePieceTokenizer.llama2();
const renderer = llama2ChatRenderer(tok);

const examples: SftExample[] = Array.from({ length: 23 }, (_, i) => {
  const r = buildExample(renderer, [{ role: 'user', content: `Question ${i}${' on claims'.repeat(i % 4)}?` }, { role: 'assistant', content: `Answer ${i}.` }], { file: 'mem', index: i });
  if (!r.ok) throw new Error(r.detail);
  return r.example;
});

/** A batch as comparable numbers. */
const sig = (b: { tokens: Int32Array; targets: Int32Array; cuSeqlens: Int32Array }): string => `${b.tokens.join(',')}|${b.targets.join(',')}|${b.cuSeqlens.join(',')}`;

describe('SftBatchStream', () => {
  const opts = { seqLen: 64, batchSize: 2, seed: 5, strategy: 'bfd' as const };

  it('visits every row once per epoch, in an order set by the seed', () => {
    const s = new SftBatchStream(examples, opts);
    const n = s.rows.length;
    expect(n).toBeGreaterThan(4);
    const rowSig = new Map(s.rows.map((r, i) => [sig(r), i]));
    const seen: number[] = [];
    while (seen.length < 2 * n) {
      const b = s.next();
      for (let k = 0; k < 2; k++) {
        const L = b.tokens.length / 2;
        const part = { tokens: b.tokens.subarray(k * L, (k + 1) * L), targets: b.targets.subarray(k * L, (k + 1) * L), cuSeqlens: new Int32Array(0) };
        const hit = [...rowSig.entries()].find(([key]) => key.startsWith(`${part.tokens.join(',')}|${part.targets.join(',')}|`));
        expect(hit).toBeDefined();
        seen.push(hit![1]);
      }
    }
    expect([...seen.slice(0, n)].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect([...seen.slice(n, 2 * n)].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(seen.slice(n, 2 * n).join(',')).not.toBe(seen.slice(0, n).join(','));
    const other = new SftBatchStream(examples, { ...opts, seed: 6 });
    const again = new SftBatchStream(examples, opts);
    const a = Array.from({ length: 5 }, () => sig(again.next()));
    expect(Array.from({ length: 5 }, () => sig(other.next()))).not.toEqual(a);
    const third = new SftBatchStream(examples, opts);
    expect(Array.from({ length: 5 }, () => sig(third.next()))).toEqual(a);
  });

  it('resumes from a position with exactly the batches that came next; refuses a position of other data', () => {
    const s = new SftBatchStream(examples, opts);
    for (let i = 0; i < 7; i++) s.next();
    const pos = JSON.parse(JSON.stringify(s.position()));
    const next = Array.from({ length: 6 }, () => sig(s.next()));
    const resumed = new SftBatchStream(examples, opts, pos);
    expect(Array.from({ length: 6 }, () => sig(resumed.next()))).toEqual(next);
    expect(() => new SftBatchStream(examples.slice(1), opts, pos)).toThrow(/fingerprint/);
    expect(() => new SftBatchStream(examples, { ...opts, batchSize: 3 }, pos)).toThrow(/fingerprint/);
  });

  it('ranks split each global batch: rank 0 and 1 together are the one-rank batch of twice the rows', () => {
    const one = new SftBatchStream(examples, { ...opts, batchSize: 4 });
    const r0 = new SftBatchStream(examples, { ...opts, batchSize: 2, worldSize: 2, rank: 0 });
    const r1 = new SftBatchStream(examples, { ...opts, batchSize: 2, worldSize: 2, rank: 1 });
    for (let i = 0; i < 4; i++) {
      const b = one.next();
      const a0 = r0.next();
      const a1 = r1.next();
      expect([...a0.tokens, ...a1.tokens]).toEqual([...b.tokens]);
      expect([...a0.targets, ...a1.targets]).toEqual([...b.targets]);
    }
  });

  it('validation batches pack in order and count the supervised tokens; no examples is a clear error', () => {
    const ev = sftEvalBatches(examples, { seqLen: 64, batchSize: 3 });
    expect(ev.reduce((a, b) => a + b.targetCount, 0)).toBe(examples.reduce((a, e) => a + e.supervised, 0));
    expect(ev.every((b) => b.targets.every((t, i) => t === IGNORE_INDEX || t === b.tokens[i + 1]))).toBe(true);
    expect(() => new SftBatchStream([], opts)).toThrow(/no SFT examples/);
  });
});
