// PPO's reference log-probs through an Engine over the frozen reference (src/train/ppo/reference.ts:
// the prompts' full blocks pinned once, Engine.score per rollout) equal the packed forward the
// stage used before (logits / (T + 1e-7), log-softmax, at the response rows) within 1e-4, prompts
// sharing a template prefix of two full blocks, an empty response among them; a rollout's scores
// do not depend on what was scored before (a fresh scorer, as a resumed run's, gives the same
// bits); a cache too small for all prompts pins some and scores the rest whole.
import { describe, expect, it } from 'vitest';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { Tensor, gatherRows, linear, logprobs, noGrad, scale, scope } from '../../src/tensor/index.js';
import { ReferenceScorer } from '../../src/train/ppo/reference.js';
import { packRollout } from '../../src/train/ppo/rollout.js';
import { TINY } from './sft-fixtures.js';

const T = 0.7;
const TEMPLATE = Array.from({ length: 45 }, (_, i) => 1 + ((i * 13) % 70));
const seqs = [4, 17, 30, 9, 22].map((n, k) => ({
  prompt: Int32Array.from([...TEMPLATE, ...Array.from({ length: n }, (_, i) => 40 + ((i * (3 + k)) % 50))]),
  response: Int32Array.from({ length: k === 3 ? 0 : 6 + 5 * k }, (_, i) => 20 + ((i * (7 + k)) % 80)),
}));

/** The stage's former reference pass: one packed forward, log-probs at the response rows. */
function packedLogprobs(model: LlamaForCausalLM): Float32Array {
  return noGrad(() => scope(() => {
    const p = packRollout(seqs);
    const h = model.hidden({ tokens: p.tokens, cuSeqlens: p.cuSeqlens });
    const rows = gatherRows(h, Tensor.from(p.rows, [p.rows.length], { dtype: 'i32' }));
    return Float32Array.from(logprobs(scale(linear(rows, model.outputWeight), 1 / (T + 1e-7)), Tensor.from(p.ids, [p.ids.length], { dtype: 'i32' })).toArray() as Float32Array);
  }));
}

const PROMPT_IDS = seqs.map((s) => s.prompt);
const options = (kvCacheBytes: number) => ({ temperature: T, kvCacheBytes, rolloutBatch: 8, maxNewTokens: 26, seqLen: 128, maxNumBatchedTokens: 96 });

describe('PPO reference log-probs by the engine (ReferenceScorer)', () => {
  it('equal the packed forward within 1e-4 over the pinned prompts, and depend on a rollout\'s own sequences only', async () => {
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 5 });
    const a = await ReferenceScorer.create(model, PROMPT_IDS, options(4 << 20));
    const b = await ReferenceScorer.create(model, PROMPT_IDS, options(4 << 20));
    try {
      expect(a.pinnedPrompts).toBe(seqs.length);
      const want = packedLogprobs(model);
      // a scored other rollout first (other responses to the same prompts): nothing of it may show in the next
      await a.logprobs(seqs.map((s, k) => ({ prompt: s.prompt, response: Int32Array.from({ length: 12 }, (_, i) => 30 + ((i * (k + 2)) % 60)) })));
      const got = await a.logprobs(seqs);
      expect(got.length).toBe(want.length);
      got.forEach((v, j) => expect(Math.abs(v - want[j]!), `token ${j}: ${v} vs ${want[j]}`).toBeLessThan(1e-4));
      expect(Array.from(await b.logprobs(seqs)), 'a fresh scorer (a resumed run)').toEqual(Array.from(got));
    } finally {
      a.close();
      b.close();
      model.dispose();
    }
  });

  it('a cache too small for every prompt pins those that fit, in order, and scores the rest whole', async () => {
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 5 });
    // TINY: 2 layers x 2 KV heads x 16 x 2 x 4 bytes = 512 bytes a token, 8 KiB a block of 16
    const scorer = await ReferenceScorer.create(model, PROMPT_IDS, options(30 * 8192));
    const fresh = await ReferenceScorer.create(model, PROMPT_IDS, options(30 * 8192));
    try {
      expect(scorer.pinnedPrompts).toBeGreaterThan(0);
      expect(scorer.pinnedPrompts).toBeLessThan(seqs.length);
      const want = packedLogprobs(model);
      await scorer.logprobs(seqs.map((s) => ({ prompt: s.prompt, response: s.response.subarray(0, 3) }))); // an earlier rollout: the unpinned prompts' blocks must not stay behind
      const got = await scorer.logprobs(seqs);
      got.forEach((v, j) => expect(Math.abs(v - want[j]!), `token ${j}: ${v} vs ${want[j]}`).toBeLessThan(1e-4));
      expect(Array.from(await fresh.logprobs(seqs)), 'a fresh scorer (a resumed run)').toEqual(Array.from(got));
    } finally {
      scorer.close();
      fresh.close();
      model.dispose();
    }
  });
});
