// PPO's reference log-probs through an Engine over the frozen reference (src/train/ppo/reference.ts:
// Engine.score with prefix caching, one cache a rollout) equal the packed forward the stage used
// before (logits / (T + 1e-7), log-softmax, at the response rows) within 1e-4, prompts sharing a
// template prefix of two full blocks (the cache's hits), an empty response among them; and a
// second call repeats the first bit for bit (a resumed run scores as an uninterrupted one).
import { describe, expect, it } from 'vitest';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { Tensor, gatherRows, linear, logprobs, noGrad, scale, scope } from '../../src/tensor/index.js';
import { referenceLogprobs } from '../../src/train/ppo/reference.js';
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

describe('PPO reference log-probs by the engine', () => {
  it('equal the packed forward within 1e-4 and repeat bit for bit', async () => {
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 5 });
    try {
      const want = packedLogprobs(model);
      // a small step budget: several steps, later prompts hit the template's cached blocks
      const opts = { temperature: T, kvCacheBytes: 4 << 20, maxNumSeqs: 32, maxNumBatchedTokens: 96 };
      const got = await referenceLogprobs(model, seqs, opts);
      expect(got.length).toBe(want.length);
      got.forEach((v, j) => expect(Math.abs(v - want[j]!), `token ${j}: ${v} vs ${want[j]}`).toBeLessThan(1e-4));
      expect(Array.from(await referenceLogprobs(model, seqs, opts))).toEqual(Array.from(got));
    } finally {
      model.dispose();
    }
  });
});
