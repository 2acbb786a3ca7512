// Engine hardening (issue 13, inference): streamed text is decode(prompt + output) minus
// decode(prompt), leading space of the first token included, made in O(1) per token; maxTokens
// beyond the context is an error from both engines; close() gives back every byte the engine took
// (and the weights it loaded) and a closed engine says so; complete() has one result type.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, ThreadedEngine, type EngineTokenizer, type GenerationDelta } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';
import { memoryStats } from '../../src/tensor/index.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../../src/tokenizer/index.js';
import { dataDir, llama2ModelPath } from '../tokenizer/corpus.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const data = dataDir();
const byteCfg = validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: 256 });
const byteModel = new LlamaForCausalLM(byteCfg, { seed: 5, initStd: 0.08 });

async function deltasOf(it: AsyncIterable<GenerationDelta>): Promise<GenerationDelta[]> {
  const out: GenerationDelta[] = [];
  for await (const d of it) out.push(d);
  return out;
}

/** Lines of real text: a Chinese law and English patent abstracts. */
function realPrompts(): string[] {
  const zh = readFileSync(join(data!, 'cn-ip-laws', '专利法(2020-10-17).md'), 'utf8').split('\n').filter((l) => l.length > 20);
  const en = readFileSync(join(data!, 'patentsview-abstracts', 'neural_network_patent_query.csv'), 'utf8').split('\n').filter((l) => l.length > 40);
  return [...zh.slice(3, 7).map((l) => l.slice(0, 40)), ...en.slice(1, 5).map((l) => l.slice(0, 120))];
}

describe.skipIf(!data)(`streamed text on real prompts${data ? '' : ' (skipped: no ../shared/data; set PATENTGPT_DATA)'}`, () => {
  it('LLaMA-2 tokenizer: the deltas concatenate to decode(prompt + output) - decode(prompt), leading space of the first token kept', async () => {
    const path = llama2ModelPath();
    const tok = path ? SentencePieceTokenizer.load(path) : SentencePieceTokenizer.llama2();
    const cfg = validateConfig({ ...preset('tiny').config, vocabSize: tok.vocabSize, maxSeqLen: 256 });
    const model = new LlamaForCausalLM(cfg, { seed: 3, initStd: 0.08 });
    const engine = new Engine(model, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    let spaced = 0;
    try {
      const prompts = realPrompts();
      const runs = await Promise.all(prompts.map((p, i) => deltasOf(engine.generate(p, { maxTokens: 16, ignoreEos: true, temperature: 1, seed: i }))));
      runs.forEach((deltas, i) => {
        const ids = Array.from(tok.encode(prompts[i]!, { bos: true }));
        const out = deltas.flatMap((d) => d.tokens);
        const base = tok.decode(ids);
        const want = tok.decode([...ids, ...out]).slice(base.length);
        expect(deltas.map((d) => d.text).join('')).toBe(want);
        // Every delta so far is the text of the tokens so far (no held text is lost or taken back).
        let text = '';
        deltas.forEach((d, k) => {
          text += d.text;
          expect(tok.decode([...ids, ...out.slice(0, k + 1)]).slice(base.length).startsWith(text)).toBe(true);
        });
        if (tok.idToPiece(out[0]!).startsWith('\u2581')) {
          expect(deltas[0]!.text.startsWith(' ')).toBe(true); // the old bug: "▁a" streamed as "a"
          spaced++;
        }
      });
      expect(spaced).toBeGreaterThan(0);
    } finally {
      engine.close();
      model.dispose();
    }
  });

  it('byte tokenizer: Chinese prompts, random bytes out: deltas are exact and never take back a U+FFFD', async () => {
    const tok = new ByteTokenizer();
    const engine = new Engine(byteModel, { kvCacheBytes: 2 ** 22, tokenizer: tok, addBos: false });
    try {
      for (const [i, p] of realPrompts().slice(0, 4).entries()) {
        const deltas = await deltasOf(engine.generate(p, { maxTokens: 40, ignoreEos: true, temperature: 1, seed: i }));
        const ids = Array.from(tok.encode(p));
        const out = deltas.flatMap((d) => d.tokens);
        const want = tok.decode([...ids, ...out]).slice(tok.decode(ids).length);
        let text = '';
        for (const d of deltas) {
          text += d.text;
          expect(want.startsWith(text)).toBe(true);
        }
        expect(text).toBe(want);
      }
    } finally {
      engine.close();
    }
  });
});

/**
 * A model that continues `prompt` with exactly `script` under greedy decoding: every layer adds
 * nothing to the residual (o_proj and down_proj are zero), so the last row's hidden state is its
 * token's embedding, and the head's row for each script token is the normed embedding of the
 * token before it (the dot product with itself, dim, beats any other's, about sqrt(dim)).
 */
function scriptedModel(vocabSize: number, prompt: readonly number[], script: readonly number[]): LlamaForCausalLM {
  const cfg = validateConfig({ ...preset('tiny').config, vocabSize, maxSeqLen: 256, tieEmbeddings: false });
  const model = new LlamaForCausalLM(cfg, { seed: 17, initStd: 1 });
  const params = new Map(model.namedParameters());
  for (const [name, p] of params) if (/(o_proj|down_proj)\.weight$/.test(name)) p.write(new Float32Array(p.size));
  const C = cfg.dim;
  const embed = params.get('model.embed_tokens.weight')!.toArray() as Float32Array;
  const head = new Float32Array(vocabSize * C);
  const chain = [prompt[prompt.length - 1]!, ...script];
  for (let i = 1; i < chain.length; i++) {
    const e = embed.subarray(chain[i - 1]! * C, (chain[i - 1]! + 1) * C);
    const rms = Math.sqrt(e.reduce((a, x) => a + x * x, 0) / C);
    head.set(e.map((x) => x / rms), chain[i]! * C);
  }
  params.get('lm_head.weight')!.write(head);
  return model;
}

describe('Engine hardening', () => {
  it('streams a scripted LLaMA-2 continuation exactly: the first token\'s space, characters split over 3 and 4 byte pieces held until whole (Engine and ThreadedEngine)', async () => {
    const tok = SentencePieceTokenizer.llama2();
    const prompt = Array.from(tok.encode('Claim 1.', { bos: true }));
    const whole = Array.from(tok.encode('Claim 1. A 䶮𠀋 valve', { bos: true }));
    expect(whole.slice(0, prompt.length)).toEqual(prompt);
    const script = whole.slice(prompt.length);
    expect(script.map((id) => tok.idToPiece(id))).toEqual(['▁A', '▁', '<0xE4>', '<0xB6>', '<0xAE>', '<0xF0>', '<0xA0>', '<0x80>', '<0x8B>', '▁val', 've']);
    const model = scriptedModel(tok.vocabSize, prompt, script);
    const engine = new Engine(model, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    const remote = await ThreadedEngine.fromModel(model, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    try {
      const want = [' A', ' ', '', '', '䶮', '', '', '', '𠀋', ' val', 've'];
      for (const e of [engine, remote]) {
        const deltas = await deltasOf(e.generate(prompt, { maxTokens: script.length, ignoreEos: true }));
        expect(deltas.flatMap((d) => d.tokens)).toEqual(script);
        expect(deltas.map((d) => d.text)).toEqual(want);
        expect(deltas.map((d) => d.text).join('')).toBe(tok.decode(whole).slice(tok.decode(prompt).length));
      }
      // Stop strings over split characters: the text stops just before, the tokens at the one that completed it.
      const stopped = await engine.complete(prompt, { maxTokens: script.length, ignoreEos: true, stop: ['䶮𠀋'] });
      expect(stopped).toEqual({ tokens: script.slice(0, 9), text: ' A ', finishReason: 'stop' });
      expect(await remote.complete(prompt, { maxTokens: script.length, ignoreEos: true, stop: ['䶮𠀋'] })).toEqual(stopped);
      expect((await engine.complete(prompt, { maxTokens: script.length, ignoreEos: true, stop: ['A 䶮', 'val'] })).text).toBe(' ');
      // Ending inside a character: the held bytes come out as decode() shows them.
      const cut = await engine.complete(prompt, { maxTokens: 4, ignoreEos: true });
      expect(cut.text).toBe(tok.decode(whole.slice(0, prompt.length + 4)).slice(tok.decode(prompt).length));
      expect(cut.text).toBe(' A \uFFFD\uFFFD');
    } finally {
      engine.close();
      await remote.close();
      model.dispose();
    }
  }, 60_000);

  it('text deltas cost O(1) per token: decode() work per token does not grow with the output', async () => {
    const bytes = new ByteTokenizer();
    let decodedIds = 0;
    let pushes = 0;
    // With an incremental decoder (as the package's tokenizers have): decode() is never needed.
    const withDecoder: EngineTokenizer = {
      eosId: -1,
      encode: (t) => bytes.encode(t),
      decode: (ids) => {
        decodedIds += ids.length;
        return bytes.decode(ids);
      },
      decoder: () => {
        const d = bytes.decoder();
        return { push: (id) => (pushes++, d.push(id)), pending: () => d.pending(), flush: () => d.flush() };
      },
    };
    // With decode() only: a window of a few ids per token.
    const decodeOnly: EngineTokenizer = { eosId: -1, encode: withDecoder.encode, decode: withDecoder.decode };
    const perToken = async (tokenizer: EngineTokenizer, n: number): Promise<number> => {
      const engine = new Engine(byteModel, { kvCacheBytes: 2 ** 22, tokenizer });
      decodedIds = 0;
      pushes = 0;
      const r = await engine.complete([65, 66, 67, 68], { maxTokens: n, ignoreEos: true });
      engine.close();
      expect(r.tokens.length).toBe(n);
      return decodedIds / n;
    };
    expect(await perToken(withDecoder, 200)).toBe(0);
    expect(pushes).toBe(4 + 200); // the prompt once, then one push per token
    const short = await perToken(decodeOnly, 25);
    const long = await perToken(decodeOnly, 200);
    expect(long).toBeLessThan(30); // re-decoding the output each step costs ~n/2 ids per token (100 here)
    expect(long).toBeLessThan(short * 1.5 + 1);
  });

  it('maxTokens beyond the context is an error naming maxTokens, the prompt length and the context (Engine and ThreadedEngine)', async () => {
    const engine = new Engine(byteModel, { kvCacheBytes: 2 ** 22 });
    const remote = await ThreadedEngine.fromModel(byteModel, { kvCacheBytes: 2 ** 22 });
    try {
      const p = Array.from({ length: 100 }, (_, i) => (i * 7) % 256);
      const msg = /maxTokens 200 \+ the prompt's 100 tokens exceed the context of 256 tokens/;
      expect(() => engine.generate(p, { maxTokens: 200 })).toThrow(msg);
      await expect(engine.complete(p, { maxTokens: 157 })).rejects.toMatchObject({ code: 'E_ARGUMENT' });
      await expect(remote.complete(p, { maxTokens: 200 })).rejects.toThrow(msg);
      // Exactly the room left is fine, and a request fills it.
      const fits = await engine.complete(p, { maxTokens: 156, ignoreEos: true });
      expect(fits).toMatchObject({ finishReason: 'length' });
      expect(fits.tokens.length).toBe(156);
      expect((await remote.complete(p, { maxTokens: 156, ignoreEos: true })).tokens).toEqual(fits.tokens);
    } finally {
      engine.close();
      await remote.close();
    }
  }, 60_000);

  it('close() gives back every byte the engine took (caches, decode buffers, loaded weights); a closed engine is a clear error', async () => {
    const before = memoryStats().cpu.liveBytes;
    const engine = new Engine(byteModel, { kvCacheBytes: 2 ** 20, blockSize: 8 });
    expect(memoryStats().cpu.liveBytes).toBeGreaterThan(before);
    // Prefill, decode (the prepared fused calls), prefix-cache hits and a batch.
    await engine.complete([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], { maxTokens: 12, ignoreEos: true });
    await Promise.all(Array.from({ length: 6 }, (_, i) => engine.complete([1, 2, 3, 4, 5, 6, 7, 8, 9, i], { maxTokens: 9, ignoreEos: true })));
    engine.close();
    expect(memoryStats().cpu.liveBytes).toBe(before);
    expect(() => engine.generate([1, 2])).toThrow(/generate\(\) after close\(\)/);
    await expect(engine.complete([1, 2])).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expect(() => engine.stats()).toThrow(/stats\(\) after close\(\)/);
    engine.close(); // idempotent

    // An engine that loaded its weights frees them too.
    const loaded = await Engine.fromPretrained(join(fixtures, 'infer-tiny-f32'), { kvCacheBytes: 2 ** 20 });
    expect(memoryStats().cpu.liveBytes).toBeGreaterThan(before + loaded.stats().kvCacheBytes); // weights + caches
    await loaded.complete([1, 2, 3, 4, 5], { maxTokens: 8, ignoreEos: true });
    loaded.close();
    expect(memoryStats().cpu.liveBytes).toBe(before);

    // The threaded engine (its worker's memory is this process's too).
    const remote = await ThreadedEngine.fromModel(byteModel, { kvCacheBytes: 2 ** 20 });
    await remote.complete([1, 2, 3], { maxTokens: 5, ignoreEos: true });
    await remote.close();
    expect(memoryStats().cpu.liveBytes).toBe(before);
    const late = await Promise.race([remote.stats().then(() => 'answered', (e: Error) => e.message), new Promise((r) => setTimeout(() => r('no answer'), 5000))]);
    expect(late).toMatch(/stats\(\) after close\(\)/);
    await expect(remote.complete([1, 2])).rejects.toMatchObject({ code: 'E_DISPOSED' });
  }, 60_000);

  it('complete() reports the same finish reasons from Engine and ThreadedEngine', async () => {
    const tok = new ByteTokenizer();
    const opts = { kvCacheBytes: 2 ** 22, tokenizer: tok, addBos: false };
    const engine = new Engine(byteModel, opts);
    const remote = await ThreadedEngine.fromModel(byteModel, opts);
    try {
      const full = await engine.complete('Claim 1.', { maxTokens: 12, ignoreEos: true });
      const stop = [full.tokens[5]!];
      for (const o of [{ maxTokens: 12, ignoreEos: true }, { maxTokens: 12, ignoreEos: true, stopTokenIds: stop }]) {
        const [a, b] = await Promise.all([engine.complete('Claim 1.', o), remote.complete('Claim 1.', o)]);
        expect(b).toEqual(a);
      }
      expect(full.finishReason).toBe('length');
      expect((await remote.complete('Claim 1.', { maxTokens: 12, ignoreEos: true, stopTokenIds: stop })).finishReason).toBe('stop');
    } finally {
      engine.close();
      await remote.close();
    }
  }, 60_000);
});
