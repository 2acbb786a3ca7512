// The inference engine serves an SMoE model unchanged (continuous batching, paged KV cache):
// greedy output equals full forwards without a cache, alone and inside a batch.
import { describe, expect, it } from 'vitest';
import { greedyByFullForwards } from '../helpers.js';
import { Engine } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';

const cfg = validateConfig({ ...preset('tiny-moe').config, vocabSize: 259 });
const model = new LlamaForCausalLM(cfg, { seed: 12, initStd: 0.08 });
const perToken = 2 * cfg.nLayers * cfg.nKvHeads * (cfg.dim / cfg.nHeads) * 4;
const prompt = (len: number, salt: number): number[] => Array.from({ length: len }, (_, i) => (i * 37 + salt * 101 + 3) % 256);

const referenceGreedy = (p: number[], n: number): number[] => greedyByFullForwards(model, p, n);

describe('Engine with an SMoE model', () => {
  it('greedy output equals the no-cache reference, alone and in a batch of 6', async () => {
    const specs = Array.from({ length: 6 }, (_, i) => ({ p: prompt(4 + i * 9, i), maxTokens: 8 }));
    const solo = new Engine(model, { kvCacheBytes: 64 * 16 * perToken, blockSize: 16 });
    const alone: number[][] = [];
    for (const s of specs) alone.push((await solo.complete(s.p, { maxTokens: s.maxTokens, ignoreEos: true })).tokens);
    solo.close();
    expect(alone[1]).toEqual(referenceGreedy(specs[1]!.p, 8));
    expect(alone[4]).toEqual(referenceGreedy(specs[4]!.p, 8));
    const batched = new Engine(model, { kvCacheBytes: 64 * 16 * perToken, blockSize: 8, maxNumBatchedTokens: 24 });
    const together = await Promise.all(specs.map((s) => batched.complete(s.p, { maxTokens: s.maxTokens, ignoreEos: true }).then((r) => r.tokens)));
    expect(together).toEqual(alone);
    batched.close();
  }, 60_000);
});
