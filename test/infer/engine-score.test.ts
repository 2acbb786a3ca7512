// Engine.score: log-probs of a given continuation after a prompt, teacher-forced through the
// paged runner (logits of every continuation row, not only the last). They equal the packed
// training forward's (log-softmax of logits / (T + 1e-7), as PPO scores its reference) within
// 1e-4: in one step, over chunked prefills, on the fused decode path (a continuation of one
// token after a cached prompt), and when the prompt prefix comes from the prefix cache (a
// second call computes fewer tokens: the stats show it).
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/infer/engine.js';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { Tensor, gatherRows, linear, logprobs, noGrad, scale, scope } from '../../src/tensor/index.js';
import { packRollout } from '../../src/train/ppo/rollout.js';
import { TINY } from '../train/sft-fixtures.js';

const T = 0.7;
const PREFIX = Array.from({ length: 37 }, (_, i) => 3 + ((i * 11) % 60)); // shared by every prompt: two full blocks of 16
const PROMPTS = [5, 23, 41].map((n, k) => Int32Array.from([...PREFIX, ...Array.from({ length: n }, (_, i) => 40 + ((i * (7 + k)) % 50))]));
const CONTS = [9, 1, 30].map((n, k) => Int32Array.from({ length: n }, (_, i) => 10 + ((i * (5 + 3 * k)) % 90)));

/** Log-probs at temperature T of each continuation by the packed training forward. */
function forwardLogprobs(model: LlamaForCausalLM, prompts: Int32Array[], conts: Int32Array[]): number[][] {
  return noGrad(() => scope(() => {
    const p = packRollout(prompts.map((prompt, i) => ({ prompt, response: conts[i]! })));
    const h = model.hidden({ tokens: p.tokens, cuSeqlens: p.cuSeqlens });
    const rows = gatherRows(h, Tensor.from(p.rows, [p.rows.length], { dtype: 'i32' }));
    const lp = Array.from(logprobs(scale(linear(rows, model.outputWeight), 1 / (T + 1e-7)), Tensor.from(p.ids, [p.ids.length], { dtype: 'i32' })).toArray() as Float32Array);
    let at = 0;
    return conts.map((c) => lp.slice(at, (at += c.length)));
  }));
}

function expectClose(got: Float32Array, want: number[], what: string): void {
  expect(got.length, what).toBe(want.length);
  got.forEach((v, j) => expect(Math.abs(v - want[j]!), `${what}, token ${j}: ${v} vs ${want[j]}`).toBeLessThan(1e-4));
}

describe('Engine.score', () => {
  for (const budget of [512, 24]) {
    it(`equals the packed training forward's log-probs, uncached and from the prefix cache (step budget ${budget}${budget < 100 ? ': chunked prefills' : ''})`, async () => {
      const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 3 });
      const engine = new Engine(model, { enablePrefixCaching: true, kvCacheBytes: 4 << 20, eosTokenId: null, maxNumBatchedTokens: budget });
      try {
        const want = forwardLogprobs(model, PROMPTS, CONTS);
        const first = await Promise.all(PROMPTS.map((p, i) => engine.score(p, CONTS[i]!, { temperature: T })));
        first.forEach((got, i) => expectClose(got, want[i]!, `first call, sequence ${i}`));
        const s1 = engine.stats();
        const total = PROMPTS.reduce((a, p, i) => a + p.length + CONTS[i]!.length - 1, 0);
        expect(s1.tokensComputed).toBeLessThanOrEqual(total);
        // again, one at a time: every prompt's full blocks come from the cache
        for (const [i, p] of PROMPTS.entries()) {
          const before = engine.stats().tokensComputed;
          const got = await engine.score(p, CONTS[i]!, { temperature: T });
          expectClose(got, want[i]!, `second call, sequence ${i}`);
          const computed = engine.stats().tokensComputed - before;
          expect(computed, `sequence ${i} recomputed its cached prompt`).toBe(p.length + CONTS[i]!.length - 1 - Math.floor((p.length - 1) / 16) * 16);
        }
        expect(engine.stats().prefixCacheHitRate).toBeGreaterThan(0);
        expect(engine.stats().blocks.used).toBe(0); // every request freed its blocks
      } finally {
        engine.close();
        model.dispose();
      }
    });
  }

  it('pinPrefix holds a prompt prefix for good: requests that add nothing to the cache (cache: false) read it, and repeat bit for bit', async () => {
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 3 });
    const engine = new Engine(model, { enablePrefixCaching: true, kvCacheBytes: 4 << 20, eosTokenId: null });
    try {
      const want = forwardLogprobs(model, PROMPTS, CONTS);
      let pinned = 0;
      const PINNED = PROMPTS.slice(0, 2); // the third prompt is not pinned: only its first two blocks (the shared prefix) are
      for (const p of PINNED) pinned += await engine.pinPrefix(p);
      expect(pinned).toBe(PINNED.reduce((a, p) => a + Math.floor(p.length / 16) * 16, 0));
      const held = engine.stats().blocks.used;
      expect(held).toBe(2 + PINNED.reduce((a, p) => a + Math.floor(p.length / 16) - 2, 0)); // the shared two blocks once
      const hit = (i: number): number => (i < 2 ? Math.floor((PROMPTS[i]!.length - 1) / 16) * 16 : 32);
      const computedBy = async (i: number): Promise<{ lp: Float32Array; n: number }> => {
        const before = engine.stats().tokensComputed;
        const lp = await engine.score(PROMPTS[i]!, CONTS[i]!, { temperature: T, cache: false });
        return { lp, n: engine.stats().tokensComputed - before };
      };
      for (const i of [2, 0, 1]) {
        const a = await computedBy(i);
        expectClose(a.lp, want[i]!, `sequence ${i} over the pinned blocks`);
        expect(a.n, `sequence ${i}`).toBe(PROMPTS[i]!.length + CONTS[i]!.length - 1 - hit(i));
        const b = await computedBy(i); // cache: false left nothing more to hit
        expect(b.n, `sequence ${i} again`).toBe(a.n);
        expect(Array.from(b.lp)).toEqual(Array.from(a.lp));
      }
      expect(engine.stats().blocks.used).toBe(held); // scoring freed its own blocks; the pins stay
      const plain = new Engine(model, { enablePrefixCaching: false, kvCacheBytes: 1 << 20 });
      await expect(plain.pinPrefix(PROMPTS[0]!)).rejects.toThrow(/enablePrefixCaching/);
      plain.close();
    } finally {
      engine.close();
      model.dispose();
    }
  });

  it('scores at temperature 1 by default, returns nothing for an empty continuation, refuses bad tokens', async () => {
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 3 });
    const engine = new Engine(model, { enablePrefixCaching: false, kvCacheBytes: 4 << 20, eosTokenId: null });
    try {
      const at1 = await engine.score(PROMPTS[0]!, CONTS[0]!);
      const atT = await engine.score(PROMPTS[0]!, CONTS[0]!, { temperature: T });
      expect(Math.max(...at1.map((v, j) => Math.abs(v - atT[j]!)))).toBeGreaterThan(1e-3);
      expect((await engine.score(PROMPTS[0]!, [])).length).toBe(0);
      await expect(engine.score(PROMPTS[0]!, [model.config.vocabSize])).rejects.toThrow(/outside the vocabulary/);
      await expect(engine.score([], [1])).rejects.toThrow(/prompt is empty/);
    } finally {
      engine.close();
      model.dispose();
    }
  });

  it('runs beside generation: a sampled completion is the same with scoring requests in its steps', async () => {
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 3 });
    const engine = new Engine(model, { enablePrefixCaching: false, kvCacheBytes: 4 << 20, eosTokenId: null });
    try {
      const alone = await engine.complete(PROMPTS[1]!, { maxTokens: 12, temperature: 1, seed: 5 });
      const [mixed, scored] = await Promise.all([
        engine.complete(PROMPTS[1]!, { maxTokens: 12, temperature: 1, seed: 5 }),
        engine.score(PROMPTS[2]!, CONTS[2]!, { temperature: T }),
      ]);
      expect(mixed.tokens).toEqual(alone.tokens);
      expectClose(scored, forwardLogprobs(model, [PROMPTS[2]!], [CONTS[2]!])[0]!, 'beside generation');
    } finally {
      engine.close();
      model.dispose();
    }
  });
});
