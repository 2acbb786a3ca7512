// A model folder's recorded tokenizer is the engine's when none is given: Engine.fromPretrained
// and ThreadedEngine.fromPretrained take text prompts on any folder savePretrained wrote with one,
// and give the same tokens as an engine handed that tokenizer explicitly.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, ThreadedEngine } from '../../src/infer/index.js';
import { loadFolderTokenizer } from '../../src/infer/folder-tokenizer.js';
import { LlamaForCausalLM, preset, savePretrained } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-folder-tok-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const withTok = path.join(root, 'byte'), without = path.join(root, 'none');
const cfg = preset('tiny').config;
beforeAll(async () => {
  const model = new LlamaForCausalLM({ ...cfg, vocabSize: 259 }, { seed: 3, initStd: 0.05 });
  await savePretrained(model, withTok, { tokenizer: new ByteTokenizer() });
  await savePretrained(model, without);
  model.dispose();
});

describe('the folder tokenizer', () => {
  const opts = { maxTokens: 8, ignoreEos: true, kvCacheBytes: 2 ** 22 };
  it('Engine and ThreadedEngine from a folder take a text prompt with the tokenizer it records', async () => {
    expect(loadFolderTokenizer(withTok)).toBeInstanceOf(ByteTokenizer);
    const e = await Engine.fromPretrained(withTok, { kvCacheBytes: opts.kvCacheBytes });
    const ours = await e.complete('A claim', { maxTokens: 8, ignoreEos: true });
    e.close();
    const explicit = await Engine.fromPretrained(withTok, { kvCacheBytes: opts.kvCacheBytes, tokenizer: new ByteTokenizer() });
    const want = await explicit.complete('A claim', { maxTokens: 8, ignoreEos: true });
    explicit.close();
    expect(ours.tokens).toEqual(want.tokens);
    expect(ours.text).toBe(want.text);
    const t = await ThreadedEngine.fromPretrained(withTok, { kvCacheBytes: opts.kvCacheBytes });
    expect(t.maxModelLen).toBe(cfg.maxSeqLen); // the worker's engine tells its context (a server over it needs it)
    expect((await t.complete('A claim', { maxTokens: 8, ignoreEos: true })).tokens).toEqual(want.tokens);
    await t.close();
  });

  it('a folder that records none: token prompts only, as before', async () => {
    expect(loadFolderTokenizer(without)).toBeNull();
    const e = await Engine.fromPretrained(without, { kvCacheBytes: opts.kvCacheBytes });
    expect(() => e.generate('A claim')).toThrow(/tokenizer/);
    expect((await e.complete([1, 2, 3], { maxTokens: 4, ignoreEos: true })).tokens).toHaveLength(4);
    e.close();
  });
});
