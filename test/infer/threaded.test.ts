// ThreadedEngine: the engine in a worker thread gives the same outputs as in this thread, loads
// a folder itself, fails bad requests alone, cancels, and shuts its worker down.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, ThreadedEngine } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;

describe('ThreadedEngine', () => {
  it('matches the in-thread engine, text and stop strings included; bad requests fail alone; abort and close', async () => {
    const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 259 });
    const model = new LlamaForCausalLM(cfg, { seed: 2, initStd: 0.08 });
    const tok = new ByteTokenizer();
    const opts = { kvCacheBytes: 2 ** 22, tokenizer: tok, addBos: false };
    const local = new Engine(model, opts);
    const remote = await ThreadedEngine.fromModel(model, opts);
    const prompts = ['Claim 1. A method', 'The invention relates to', 'x'];
    const want = await Promise.all(prompts.map((p) => local.complete(p, { maxTokens: 20, ignoreEos: true })));
    const bad = remote.generate('abc', { topP: 2 });
    const got = await Promise.all(prompts.map((p) => remote.complete(p, { maxTokens: 20, ignoreEos: true })));
    expect(got.map((g) => g.tokens)).toEqual(want.map((w) => w.tokens));
    expect(got.map((g) => g.text)).toEqual(want.map((w) => w.text));
    await expect(bad.next()).rejects.toThrow(/topP must be in \(0, 1\]/);
    const stop = want[0]!.text.slice(3, 5);
    expect((await remote.complete(prompts[0]!, { maxTokens: 20, ignoreEos: true, stop: [stop] })).text)
      .toBe((await local.complete(prompts[0]!, { maxTokens: 20, ignoreEos: true, stop: [stop] })).text);
    const ac = new AbortController();
    const it = remote.generate('abort me', { maxTokens: 200, ignoreEos: true, signal: ac.signal });
    await it.next();
    ac.abort();
    await expect(it.next()).rejects.toThrow(/abort/i);
    const s = await remote.stats();
    expect(s.running).toBe(0);
    expect(s.blocks.used).toBe(0);
    await remote.close();
    expect(() => remote.generate('late')).toThrow(/after close/);
    local.close();
  }, 60_000);

  it('loads a safetensors folder in the worker (golden transformers continuation)', async () => {
    const golden = JSON.parse(readFileSync(join(fixtures, 'infer-tiny-golden.json'), 'utf8')) as { prompts: number[][]; outputs: number[][] };
    const engine = await ThreadedEngine.fromPretrained(join(fixtures, 'infer-tiny-f32'), { kvCacheBytes: 2 ** 22 });
    const out = await engine.complete(golden.prompts[1]!, { maxTokens: 64, ignoreEos: true });
    expect(out.tokens).toEqual(golden.outputs[1]);
    await engine.close();
    await expect(ThreadedEngine.fromPretrained(join(fixtures, 'no-such-model'))).rejects.toThrow();
  }, 60_000);
});
