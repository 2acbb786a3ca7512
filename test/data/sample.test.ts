// The built-in sample corpus: original text in three categories, deterministic, and shards that
// a packed batch stream reads with the byte tokenizer.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BatchStream } from '../../src/data/packing.js';
import { SAMPLE_TEXTS, sampleCorpus, writeSampleShards } from '../../src/data/sample/index.js';
import { ShardSet } from '../../src/data/shards.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';

describe('sample corpus', () => {
  it('has a few KB of hand-written IP text in three categories and is deterministic', () => {
    const bytes = SAMPLE_TEXTS.reduce((a, d) => a + Buffer.byteLength(d.text), 0);
    expect(bytes).toBeGreaterThan(5000);
    expect(new Set(SAMPLE_TEXTS.map((d) => d.category))).toEqual(new Set(['patent', 'law', 'qa']));
    expect(sampleCorpus({ seed: 3 })).toEqual(sampleCorpus({ seed: 3 }));
    expect(sampleCorpus({ seed: 3 })).not.toEqual(sampleCorpus({ seed: 4 }));
    expect(sampleCorpus({ generated: 10 }).length).toBe(SAMPLE_TEXTS.length + 10);
  });

  it('writes shards that train and validation streams read back as text', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-sample-'));
    const tok = new ByteTokenizer();
    const m = await writeSampleShards(dir, tok, { generated: 50 });
    expect(m.tokenizer).toBe('byte');
    expect(Object.keys(m.categories).sort()).toEqual(['law', 'patent', 'qa']);
    const set = await ShardSet.open(dir, { vocabSize: tok.vocabSize });
    const first = set.shards.find((s) => s.category === 'law')!.document(0);
    expect(first[0]).toBe(tok.bosId);
    expect(first[first.length - 1]).toBe(tok.eosId);
    expect(tok.decode(first)).toBe(SAMPLE_TEXTS.find((d) => d.category === 'law')!.text);
    const weights = { patent: 0.6, law: 0.25, qa: 0.15 };
    const train = new BatchStream([set], { batchSize: 2, seqLen: 128, seed: 1, weights, split: 'train', valFraction: 0.05 });
    const val = new BatchStream([set], { batchSize: 2, seqLen: 128, seed: 1, weights, split: 'val', valFraction: 0.05 });
    expect(val.mixture.length).toBe(3); // every category holds out at least one document
    expect(tok.decode(train.next().tokens)).toMatch(/[a-z]{3}/);
    expect(val.next().targetCount).toBeGreaterThan(0);
    set.close();
    fs.rmSync(dir, { recursive: true });
  });
});
