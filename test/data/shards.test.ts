// Token shards: round trip, dtype by vocabulary, streaming over shard boundaries, and refusal of
// shards that do not match (id >= vocab, dtype, checksum, truncation, missing fields).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ShardSet, ShardWriter, dtypeForVocab, writeShards, type ShardManifest } from '../../src/data/shards.js';
import { PatentGPTError } from '../../src/errors.js';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-shards-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function docs(n: number, vocab: number, seed = 1): { ids: number[]; category: string }[] {
  let s = seed;
  const rand = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  return Array.from({ length: n }, (_, i) => ({
    ids: Array.from({ length: 1 + Math.floor(rand() * 50) }, () => Math.floor(rand() * vocab)),
    category: i % 3 === 0 ? 'law' : 'patent',
  }));
}

async function expectDataError(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PatentGPTError);
  expect((err as PatentGPTError).code).toBe('E_DATA');
  for (const part of parts) expect((err as Error).message).toContain(part);
}

describe('token shards', () => {
  it('picks uint16 while the vocabulary fits, else uint32', () => {
    expect(dtypeForVocab(259)).toBe('uint16');
    expect(dtypeForVocab(65536)).toBe('uint16');
    expect(dtypeForVocab(65537)).toBe('uint32');
  });

  for (const vocab of [300, 100_000]) {
    it(`round-trips documents and categories (vocab ${vocab})`, async () => {
      const input = docs(40, vocab);
      const m = await writeShards(dir, input, { vocabSize: vocab, maxShardTokens: 200, bufferTokens: 7, tokenizer: 'test' });
      expect(m.dtype).toBe(vocab > 65536 ? 'uint32' : 'uint16');
      expect(m.documents).toBe(40);
      expect(m.tokens).toBe(input.reduce((a, d) => a + d.ids.length, 0));
      expect(m.categories.law!.documents).toBe(14);
      expect(m.shards.length).toBeGreaterThan(2); // rolled over at 200 tokens
      const set = await ShardSet.open(dir, { vocabSize: vocab });
      const got: Record<string, number[][]> = { law: [], patent: [] };
      for (const s of set.shards) for (let d = 0; d < s.documents; d++) got[s.category]!.push([...s.document(d)]);
      expect(got.law).toEqual(input.filter((d) => d.category === 'law').map((d) => d.ids));
      expect(got.patent).toEqual(input.filter((d) => d.category === 'patent').map((d) => d.ids));
      // positioned reads at arbitrary offsets
      const s0 = set.shards[0]!;
      const out = new Int32Array(5);
      s0.read(3, 5, out);
      const flat = got[s0.category]!.flat();
      expect([...out]).toEqual(flat.slice(3, 8));
      set.close();
    });
  }

  it('refuses ids outside the vocabulary when writing', async () => {
    const w = await ShardWriter.create(dir, { vocabSize: 10 });
    await expect(w.add([1, 2, 10])).rejects.toThrow(/token 2 .* is 10/);
    await expect(w.add([1, 2.5])).rejects.toThrow(/token 1 .* is 2.5/);
    // typed arrays (the scan's) take the range check and the bulk copy
    await expect(w.add(Int32Array.of(1, -1))).rejects.toThrow(/token 1 .* is -1/);
    await expect(w.add(Uint32Array.of(9, 10))).rejects.toThrow(/token 1 .* is 10/);
    await w.abort();
    expect(fs.existsSync(path.join(dir, 'manifest.json'))).toBe(false);
  });

  it('refuses a folder without a manifest and will not overwrite one silently', async () => {
    await expectDataError(ShardSet.open(dir), 'manifest.json');
    await writeShards(dir, docs(3, 50), { vocabSize: 50 });
    await expect(ShardWriter.create(dir, { vocabSize: 50 })).rejects.toThrow(/overwrite/);
  });

  it('refuses shards whose vocabulary is larger than the model', async () => {
    await writeShards(dir, docs(5, 300), { vocabSize: 300 });
    await expectDataError(ShardSet.open(dir, { vocabSize: 259 }), 'manifest.json', 'vocabSize', '300');
  });

  it('refuses a truncated token file, naming the file and field', async () => {
    const m = await writeShards(dir, docs(10, 300), { vocabSize: 300 });
    const f = path.join(dir, m.shards[0]!.file);
    fs.truncateSync(f, fs.statSync(f).size - 2);
    await expectDataError(ShardSet.open(dir), m.shards[0]!.file, 'shards[0].tokens', 'truncated');
  });

  it('refuses a flipped byte by checksum', async () => {
    const m = await writeShards(dir, docs(10, 300), { vocabSize: 300 });
    const f = path.join(dir, m.shards[1]!.file);
    const b = fs.readFileSync(f);
    b[0] = b[0]! ^ 1; // still a valid id below 300
    fs.writeFileSync(f, b);
    await expectDataError(ShardSet.open(dir), m.shards[1]!.file, 'shards[1].sha256', 'checksum');
    // 'size' verification skips the token hash but still reads valid ids
    const set = await ShardSet.open(dir, { verify: 'size' });
    expect(set.shards.length).toBe(m.shards.length);
  });

  it('refuses an id >= vocabSize in a file, at open and at read', async () => {
    const m = await writeShards(dir, docs(4, 300), { vocabSize: 300 });
    const f = path.join(dir, m.shards[0]!.file);
    const b = fs.readFileSync(f);
    b.writeUInt16LE(65000, 2);
    fs.writeFileSync(f, b);
    await expectDataError(ShardSet.open(dir), m.shards[0]!.file, 'vocabSize', '65000');
    const set = await ShardSet.open(dir, { verify: 'size' });
    expect(() => set.shards[0]!.read(0, 4, new Int32Array(4))).toThrow(/token 1 is 65000/);
  });

  it('refuses a wrong dtype and manifest fields that do not add up', async () => {
    await writeShards(dir, docs(6, 300), { vocabSize: 300 });
    const mp = path.join(dir, 'manifest.json');
    const orig = JSON.parse(fs.readFileSync(mp, 'utf8')) as ShardManifest;
    const edit = async (f: (m: Record<string, unknown>) => void, ...parts: string[]): Promise<void> => {
      const m = structuredClone(orig) as unknown as Record<string, unknown>;
      f(m);
      fs.writeFileSync(mp, JSON.stringify(m));
      await expectDataError(ShardSet.open(dir), 'manifest.json', ...parts);
    };
    await edit((m) => (m.dtype = 'uint32'), 'dtype', 'uint16');
    await edit((m) => (m.dtype = 'int8'), 'dtype');
    await edit((m) => {
      m.vocabSize = 70000;
    }, 'dtype', 'uint16');
    await edit((m) => delete m.vocabSize, 'vocabSize');
    await edit((m) => ((m.shards as Record<string, unknown>[])[0]!.tokens = 1), 'tokens');
    await edit((m) => ((m.shards as Record<string, unknown>[])[0]!.file = '../x.bin'), 'shards[0].file');
    fs.writeFileSync(mp, '{"format": ');
    await expectDataError(ShardSet.open(dir), 'manifest.json', 'JSON');
  });

  it('refuses a corrupt index file', async () => {
    const m = await writeShards(dir, docs(6, 300), { vocabSize: 300 });
    const f = path.join(dir, m.shards[0]!.index);
    const b = fs.readFileSync(f);
    b[8] = b[8]! ^ 4;
    fs.writeFileSync(f, b);
    await expectDataError(ShardSet.open(dir), m.shards[0]!.index, 'indexSha256');
  });

  it('streams many documents with constant buffers', async () => {
    const w = await ShardWriter.create(dir, { vocabSize: 1000, bufferTokens: 64 });
    let total = 0;
    for (let i = 0; i < 5000; i++) {
      const ids = new Int32Array(1 + (i % 37)).map((_, j) => (i * 7 + j) % 1000);
      total += ids.length;
      await w.add(ids, 'bulk');
    }
    const m = await w.close();
    expect(m.tokens).toBe(total);
    const set = await ShardSet.open(dir);
    const s = set.shards[0]!;
    expect(s.documents).toBe(5000);
    expect([...s.document(4999)]).toEqual([...new Int32Array(1 + (4999 % 37)).map((_, j) => (4999 * 7 + j) % 1000)]);
    set.close();
  });
});
