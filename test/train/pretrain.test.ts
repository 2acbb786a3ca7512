// The pretrain stage's pieces: stage-2 context extension as a config change, starting weights
// from a checkpoint with a smaller vocabulary, and the simple text reader.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { categoryName, readTextDocuments, splitText } from '../../src/data/textfiles.js';
import { LlamaForCausalLM, preset, savePretrained, validateConfig, type ModelConfig } from '../../src/models/index.js';
import { writeShards } from '../../src/data/shards.js';
import { loadStageConfig, validateStageConfig } from '../../src/train/config.js';
import { loadInitialWeights, pretrain, resolveModelConfig, stageModelConfig } from '../../src/train/pretrain.js';
import { stageOfKind } from '../helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-pretrain-unit-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('stage model config', () => {
  const base = preset('llama2-13b-55k').config;
  it('raises the RoPE base (paper stage 2: 4K -> 16K) or interpolates positions', () => {
    const byBase = stageModelConfig(base, { seqLen: 16384, context: { ropeTheta: 1e6 } });
    expect(byBase).toMatchObject({ ropeTheta: 1e6, maxSeqLen: 16384, ropeScaling: null });
    const byPi = stageModelConfig(base, { seqLen: 16384, context: { posScale: 4 } });
    expect(byPi).toMatchObject({ ropeTheta: 10000, maxSeqLen: 16384, ropeScaling: { type: 'linear', factor: 4 } });
    const both = stageModelConfig(base, { seqLen: 8192, context: { ropeTheta: 5e5, posScale: 2 } });
    expect(both).toMatchObject({ ropeTheta: 5e5, maxSeqLen: 8192, ropeScaling: { type: 'linear', factor: 2 } });
    expect(stageModelConfig(base, { seqLen: 4096 })).toEqual(base);
  });
  it('refuses a seqLen past the context and a lower base, naming the field', () => {
    expect(() => stageModelConfig(base, { seqLen: 8192 }, 's2.json')).toThrow(/s2\.json: seqLen: 8192 exceeds the model's context of 4096/);
    expect(() => stageModelConfig(base, { seqLen: 4096, context: { ropeTheta: 100 } }, 's2.json')).toThrow(/s2\.json: context\.ropeTheta: 100 is below/);
    expect(() => stageModelConfig(base, { seqLen: 4096, context: { posScale: 1.3333 } })).toThrow(/context\.posScale/);
  });
  it('the example configs validate and give the intended models', async () => {
    const ex = (f: string) => new URL(`../../examples/${f}`, import.meta.url).pathname;
    const want = { 'tiny-stage1.json': [256, 10000], 'tiny-stage2.json': [1024, 40000], 'paper-stage1.json': [4096, 10000], 'paper-stage2.json': [16384, 1e6] } as const;
    for (const [f, [ctx, theta]] of Object.entries(want)) {
      const cfg = await loadStageConfig(ex(f));
      const m = stageModelConfig(await resolveModelConfig(cfg.model, f), cfg, f);
      expect([m.maxSeqLen, m.ropeTheta], f).toEqual([ctx, theta]);
      expect(m.vocabSize, f).toBeGreaterThanOrEqual(259);
    }
  });

  it('resolves presets, inline configs and config.json paths', async () => {
    expect(await resolveModelConfig('llama-5m')).toEqual(preset('llama-5m').config);
    const inline = { vocabSize: 259, dim: 32, nLayers: 1, nHeads: 2, ffnDim: 64 } as ModelConfig; // partial on purpose: resolveModelConfig fills the defaults
    expect((await resolveModelConfig(inline)).nKvHeads).toBe(2);
    const f = path.join(root, 'm.json');
    fs.writeFileSync(f, JSON.stringify(inline));
    expect((await resolveModelConfig(f)).dim).toBe(32);
    await expect(resolveModelConfig('nope', 'x.json')).rejects.toThrow(/x\.json: model: unknown model preset "nope"/);
  });
});

describe('data checks', () => {
  it('refuses token shards of a larger vocabulary than the model, naming the manifest and the field', async () => {
    const shards = path.join(root, 'big-vocab');
    await writeShards(shards, [{ ids: [1, 2, 999], category: 'patent' }], { vocabSize: 1000 });
    const cfg = validateStageConfig({
      name: 'v', runDir: path.join(root, 'v'), model: { vocabSize: 259, dim: 32, nLayers: 1, nHeads: 2, ffnDim: 64, maxSeqLen: 64 },
      data: { manifests: [shards] }, seqLen: 16, batchSize: 1, steps: 1, optimizer: { lr: 0.001 },
    });
    await expect(pretrain(stageOfKind(cfg, 'pretrain'), { progress: null })).rejects.toThrow(/big-vocab\/manifest\.json: vocabSize: the shards use a vocabulary of 1000 ids, larger than the model's 259/);
  });
});

describe('starting weights', () => {
  it('grows the vocabulary of a smaller checkpoint (new rows at the mean), keeps every other tensor', async () => {
    const small = validateConfig({ vocabSize: 259, dim: 32, nLayers: 1, nHeads: 2, ffnDim: 64, maxSeqLen: 64 });
    const src = new LlamaForCausalLM(small, { seed: 4 });
    const dir = path.join(root, 'hf-small');
    await savePretrained(src, dir);
    const big = new LlamaForCausalLM({ ...small, vocabSize: 300 }, { init: 'zeros' });
    const msgs: string[] = [];
    expect(await loadInitialWeights(big, dir, (m) => msgs.push(m))).toBe(dir);
    expect(msgs[0]).toMatch(/vocabulary grown from 259 to 300/);
    const e0 = src.model.embed_tokens.weight.toArray() as Float32Array;
    const e1 = big.model.embed_tokens.weight.toArray() as Float32Array;
    expect([...e1.subarray(0, 259 * 32)]).toEqual([...e0]);
    const mean0 = Array.from({ length: 32 }, (_, c) => Array.from({ length: 259 }, (_, r) => e0[r * 32 + c]!).reduce((a, b) => a + b, 0) / 259);
    for (let c = 0; c < 32; c++) expect(e1[299 * 32 + c]!).toBeCloseTo(mean0[c]!, 6);
    expect([...(big.getParameter('model.layers.0.mlp.up_proj.weight')!.toArray() as Float32Array)])
      .toEqual([...(src.getParameter('model.layers.0.mlp.up_proj.weight')!.toArray() as Float32Array)]);
    // a different width is refused, naming the tensor and both shapes
    const wide = new LlamaForCausalLM({ ...small, dim: 64, nHeads: 4 }, { init: 'zeros' });
    await expect(loadInitialWeights(wide, dir)).rejects.toThrow(/model\.embed_tokens\.weight" has shape \[259, 32\], the model expects \[259, 64\]/);
    [src, big, wide].forEach((m) => m.dispose());
  });
});

describe('text reader', () => {
  it('reads .txt/.md/.jsonl/.json, names categories by folder, counts what it skips', async () => {
    const d = path.join(root, 'corpus', '专利 texts');
    fs.mkdirSync(path.join(d, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(d, 'a.md'), '# Title\n\nBody.');
    fs.writeFileSync(path.join(d, 'sub', 'b.json'), JSON.stringify([{ text: 'one' }, { q: 'a', a: 'b' }, { n: 1 }]));
    fs.writeFileSync(path.join(d, 'c.jsonl'), '{"content":"two"}\nnot json\n');
    fs.writeFileSync(path.join(d, 'x.xml'), '<a/>');
    const docs: string[] = [];
    const rep = await readTextDocuments([d], (doc) => {
      docs.push(`${doc.category}:${doc.text}`);
    });
    expect(docs).toEqual(['texts:# Title\n\nBody.', 'texts:two', 'texts:one', 'texts:a\nb']);
    expect(rep).toMatchObject({ files: 3, documents: 4, ignored: 1, skippedRecords: 2, unreadable: [] });
    expect(categoryName('uspto-ppd-samples')).toBe('uspto-ppd-samples');
    expect(categoryName('上海')).toBe('text');
  });
  it('reads CSV/TSV tables: a document per row from the fields with letters', async () => {
    const d = path.join(root, 'tables');
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'p.csv'), 'id,abstract,date\r\n7,"A pump, with ""quoted"" text\nover lines",2020-01-01\n8,,1999\n');
    fs.writeFileSync(path.join(d, 'q.tsv'), 'id\ttitle\n1\tA valve\n');
    const docs: string[] = [];
    const rep = await readTextDocuments([d], (doc) => {
      docs.push(doc.text);
    });
    expect(docs).toEqual(['A pump, with "quoted" text\nover lines', 'A valve']);
    expect(rep.skippedRecords).toBe(1);
  });

  it('cuts long text into documents at paragraph breaks', () => {
    const para = 'x'.repeat(3000);
    const parts = splitText([para, para, para, para].join('\n\n'), 8192);
    expect(parts.map((p) => p.length)).toEqual([6002, 6002]);
  });
});
