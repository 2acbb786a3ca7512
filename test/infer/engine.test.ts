// The engine end to end on a tiny random model: batching, chunked prefill, preemption and prefix
// caching never change a greedy output; invalid requests fail alone; the KV budget holds and
// memory returns to baseline; sampling options, stop conditions, log-probs and cancellation.
import { describe, expect, it } from 'vitest';
import { greedyByFullForwards } from '../helpers.js';
import { Engine, type GenerateOptions } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { memoryStats, noGrad } from '../../src/tensor/index.js';

const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: 256 });
const model = new LlamaForCausalLM(cfg, { seed: 11, initStd: 0.08 });
const perToken = 2 * cfg.nLayers * cfg.nKvHeads * (cfg.dim / cfg.nHeads) * 4;

function prompt(len: number, salt: number): number[] {
  return Array.from({ length: len }, (_, i) => (i * 37 + salt * 101 + 3) % 256);
}

async function tokensOf(engine: Engine, p: number[], opts: GenerateOptions): Promise<number[]> {
  return (await engine.complete(p, opts)).tokens;
}

/** Greedy continuation by full forwards without any cache (the slow reference). */
const referenceGreedy = (p: number[], n: number): number[] => greedyByFullForwards(model, p, n);

describe('Engine', () => {
  const specs = Array.from({ length: 16 }, (_, i) => ({ p: prompt(3 + ((i * 23) % 70), i), maxTokens: 6 + ((i * 7) % 15) }));

  it('greedy output alone equals the no-cache reference and the output inside a batch of 16', async () => {
    const solo = new Engine(model, { kvCacheBytes: 64 * 16 * perToken, blockSize: 16 });
    const alone: number[][] = [];
    for (const s of specs) alone.push(await tokensOf(solo, s.p, { maxTokens: s.maxTokens, ignoreEos: true }));
    solo.close();
    expect(alone[5]).toEqual(referenceGreedy(specs[5]!.p, specs[5]!.maxTokens));
    expect(alone[12]).toEqual(referenceGreedy(specs[12]!.p, specs[12]!.maxTokens));
    // Small steps (chunked prefill) and a tight budget (preemption by recompute).
    const batched = new Engine(model, { kvCacheBytes: 14 * 8 * perToken, blockSize: 8, maxNumBatchedTokens: 40, enablePrefixCaching: false });
    let maxRunning = 0;
    batched.onStep = (s) => {
      maxRunning = Math.max(maxRunning, s.running);
      expect(s.blocks.used).toBeLessThanOrEqual(s.blocks.total);
    };
    const together = await Promise.all(specs.map((s) => tokensOf(batched, s.p, { maxTokens: s.maxTokens, ignoreEos: true })));
    expect(together).toEqual(alone);
    expect(maxRunning).toBeGreaterThan(1);
    expect(batched.stats().preemptions).toBeGreaterThan(0);
    expect(batched.stats().blocks.used).toBe(0);
    batched.close();
  });

  it('prefix-cache hits give the same output as misses', async () => {
    const base = prompt(50, 7);
    const variants = [base, [...base.slice(0, 40), 1, 2, 3], [...base, 9, 9]];
    const cold = new Engine(model, { kvCacheBytes: 64 * 16 * perToken, enablePrefixCaching: false });
    const expected = [];
    for (const v of variants) expected.push(await tokensOf(cold, v, { maxTokens: 12, ignoreEos: true }));
    cold.close();
    const warm = new Engine(model, { kvCacheBytes: 64 * 16 * perToken });
    const got = [];
    for (const v of variants) got.push(await tokensOf(warm, v, { maxTokens: 12, ignoreEos: true }));
    got.push(await tokensOf(warm, variants[0]!, { maxTokens: 12, ignoreEos: true })); // a full hit
    expect(got).toEqual([...expected, expected[0]]);
    expect(warm.stats().prefixCacheHitRate).toBeGreaterThan(0.5);
    warm.close();
  });

  it('fails bad requests alone while the others go on', async () => {
    const engine = new Engine(model, { kvCacheBytes: 12 * 16 * perToken });
    const good = engine.complete(prompt(10, 1), { maxTokens: 20, ignoreEos: true });
    expect(() => engine.generate(prompt(256, 2))).toThrow(/context holds 256/);
    expect(() => engine.generate(prompt(5, 2), { temperature: -1 })).toThrow(/temperature must be >= 0/);
    expect(() => engine.generate(prompt(5, 2), { topP: 0 })).toThrow(/topP must be in \(0, 1\]/);
    expect(() => engine.generate(prompt(5, 2), { topP: 1.5 })).toThrow(/topP/);
    expect(() => engine.generate(prompt(5, 2), { stopTokenIds: [259] })).toThrow(/stop token 259 is not a token id/);
    expect(() => engine.generate(prompt(150, 2), { maxTokens: 100 })).toThrow(/need 16 KV blocks; the whole cache has 12/);
    expect(engine.stats().waiting + engine.stats().running).toBe(1); // only the good request is queued
    expect(() => engine.generate([1, 300])).toThrow(/outside the vocabulary/);
    expect(() => engine.generate('text')).toThrow(/tokenizer/);
    const after = engine.complete(prompt(12, 3), { maxTokens: 5, ignoreEos: true });
    const [a, b] = await Promise.all([good, after]);
    expect(a.tokens.length).toBe(20);
    expect(b.tokens.length).toBe(5);
    engine.close();
  });

  it('64 concurrent requests stay within the KV budget, wait their turn, and memory returns to baseline', async () => {
    const engine = new Engine(model, { kvCacheBytes: 24 * 16 * perToken, maxNumSeqs: 64 });
    const baseline = memoryStats().cpu.liveBytes;
    let maxWaiting = 0;
    let maxUsed = 0;
    engine.onStep = (s) => {
      maxUsed = Math.max(maxUsed, s.blocks.used);
      maxWaiting = Math.max(maxWaiting, s.waiting);
    };
    const outs = await Promise.all(Array.from({ length: 64 }, (_, i) => engine.complete(prompt(5 + (i % 40), i), { maxTokens: 8, ignoreEos: true })));
    expect(outs.every((o) => o.tokens.length === 8)).toBe(true);
    expect(maxUsed).toBeLessThanOrEqual(24);
    expect(maxWaiting).toBeGreaterThan(0);
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, blocks: { used: 0, free: 24 } });
    expect(memoryStats().cpu.liveBytes).toBe(baseline);
    engine.close();
  });

  it('cancels through an AbortSignal and frees the blocks at once', async () => {
    const engine = new Engine(model, { kvCacheBytes: 32 * 16 * perToken });
    const ac = new AbortController();
    const it = engine.generate(prompt(40, 4), { maxTokens: 200, ignoreEos: true, signal: ac.signal });
    const first = await it.next();
    expect(first.done).toBe(false);
    expect(engine.stats().blocks.used).toBeGreaterThan(0);
    ac.abort();
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, blocks: { used: 0 } });
    await expect(it.next()).rejects.toThrow(/abort/i);
    // Breaking out of a for-await loop cancels too.
    for await (const d of engine.generate(prompt(9, 5), { maxTokens: 50, ignoreEos: true })) {
      expect(d.tokens.length).toBe(1);
      break;
    }
    expect(engine.stats().blocks.used).toBe(0);
    engine.close();
  });

  it('yields to the event loop between steps', async () => {
    const engine = new Engine(model, { kvCacheBytes: 32 * 16 * perToken });
    // A chain of setImmediate callbacks advances once per turn of the event loop: without the
    // engine's yields between steps it would not run until generation ended.
    let ticks = 0;
    let chain = true;
    const tick = (): void => {
      ticks++;
      if (chain) setImmediate(tick);
    };
    setImmediate(tick);
    let ticksBeforeEnd = 0;
    for await (const d of engine.generate(prompt(8, 6), { maxTokens: 40, ignoreEos: true })) if (d.finishReason) ticksBeforeEnd = ticks;
    chain = false;
    expect(ticksBeforeEnd).toBeGreaterThan(20); // about one turn per step
    engine.close();
  });

  it('samples reproducibly by seed; top-k 1 and tiny top-p are greedy; penalties change the output', async () => {
    const engine = new Engine(model, { kvCacheBytes: 32 * 16 * perToken });
    const p = prompt(10, 8);
    const opts = { maxTokens: 24, ignoreEos: true };
    const greedy = await tokensOf(engine, p, opts);
    const s1 = await tokensOf(engine, p, { ...opts, temperature: 1.5, seed: 42 });
    const s2 = await tokensOf(engine, p, { ...opts, temperature: 1.5, seed: 42 });
    const s3 = await tokensOf(engine, p, { ...opts, temperature: 1.5, seed: 43 });
    expect(s1).toEqual(s2);
    expect(s1).not.toEqual(s3);
    expect(s1).not.toEqual(greedy);
    expect(await tokensOf(engine, p, { ...opts, temperature: 2, topK: 1, seed: 1 })).toEqual(greedy);
    expect(await tokensOf(engine, p, { ...opts, temperature: 2, topP: 1e-6, seed: 1 })).toEqual(greedy);
    expect(await tokensOf(engine, p, { ...opts, temperature: 2, minP: 1, seed: 1 })).toEqual(greedy);
    // A huge presence penalty forbids any repeat within the output.
    const fresh = await tokensOf(engine, p, { ...opts, presencePenalty: 1e4 });
    expect(new Set(fresh).size).toBe(fresh.length);
    const noRepeat = await tokensOf(engine, p, { ...opts, repetitionPenalty: 1e4, frequencyPenalty: 1e4 });
    expect(noRepeat.some((t) => p.includes(t))).toBe(false);
    engine.close();
  });

  it('stops on stop tokens, stop strings and EOS; reports log-probs of the raw distribution', async () => {
    const tok = new ByteTokenizer();
    const engine = new Engine(model, { kvCacheBytes: 32 * 16 * perToken, tokenizer: tok, addBos: false });
    const p = prompt(12, 9);
    const full = await engine.complete(p, { maxTokens: 30, ignoreEos: true, logprobs: 3 });
    const stopAt = full.tokens[6]!;
    const stopped = await engine.complete(p, { maxTokens: 30, ignoreEos: true, stopTokenIds: [stopAt] });
    expect(stopped.tokens).toEqual(full.tokens.slice(0, full.tokens.indexOf(stopAt) + 1));
    expect(stopped.finishReason).toBe('stop');
    // A stop string made of output bytes 4..5: the text stops just before it.
    const text = tok.decode(full.tokens);
    expect(full.text).toBe(text);
    const stop = text.slice(4, 6);
    expect(stop.length).toBe(2);
    const r = await engine.complete(p, { maxTokens: 30, ignoreEos: true, stop: [stop] });
    expect(r.text).toBe(text.slice(0, text.indexOf(stop)));
    expect(r.finishReason).toBe('stop');
    // EOS ends the request (with the token, without text) unless ignored.
    const withEos = await engine.complete(p, { maxTokens: 30, stopTokenIds: [], logprobs: 0 });
    expect(withEos.tokens.length).toBeLessThanOrEqual(30);
    // Log-probs: the chosen token's equals log-softmax of a full forward.
    const it = engine.generate(p, { maxTokens: 1, logprobs: 3 });
    const d = (await it.next()).value!;
    const ref = noGrad(() => {
      const out = model.forward({ tokens: Int32Array.from(p) });
      const row = Array.from((out.toArray() as Float32Array).subarray((p.length - 1) * cfg.vocabSize));
      out.dispose();
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
      return row.map((x) => x - lse);
    });
    const lp = d.logprobs![0]!;
    expect(lp.logprob).toBeCloseTo(ref[lp.token]!, 4);
    expect(lp.top!.length).toBe(3);
    expect(lp.top![0]!.token).toBe(lp.token); // greedy picks the top token
    expect(lp.top![1]!.logprob).toBeLessThanOrEqual(lp.top![0]!.logprob);
    expect(lp.top![2]!.logprob).toBeCloseTo([...ref].sort((a, b) => b - a)[2]!, 4);
    engine.close();
  });
  it('a tokenizer that cannot decode a request\'s token fails that request alone; the engine goes on', async () => {
    const plain = new Engine(model, { kvCacheBytes: 64 * 16 * perToken });
    const [a, b] = [prompt(12, 21), prompt(17, 22)];
    const outA = await tokensOf(plain, a, { maxTokens: 8, ignoreEos: true });
    const outB = await tokensOf(plain, b, { maxTokens: 8, ignoreEos: true });
    plain.close();
    const bad = outA.find((t) => !outB.includes(t));
    expect(bad).toBeDefined(); // the two random continuations differ somewhere
    const bytes = new ByteTokenizer();
    const tokenizer = {
      eosId: -1,
      encode: (text: string) => bytes.encode(text),
      decode: (ids: ArrayLike<number>) => {
        if (Array.from(ids).includes(bad!)) throw new Error(`no text for token ${bad}`);
        return bytes.decode(Array.from(ids).filter((t) => t < 259));
      },
    };
    const engine = new Engine(model, { kvCacheBytes: 64 * 16 * perToken, tokenizer });
    const [ra, rb] = await Promise.allSettled([engine.complete(a, { maxTokens: 8, ignoreEos: true }), engine.complete(b, { maxTokens: 8, ignoreEos: true })]);
    expect(ra.status).toBe('rejected');
    expect(String((ra as PromiseRejectedResult).reason)).toMatch(/no text for token/);
    expect(rb.status === 'fulfilled' && rb.value.tokens).toEqual(outB);
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, blocks: { used: 0 } });
    engine.close();
  });
});
