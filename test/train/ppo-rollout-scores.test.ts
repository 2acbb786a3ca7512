// PPO takes the rollout policy's old log-probs and values from the generation itself (as TRL takes
// its old log-probs from generate's scores): the engine hands each sampled token's raw logits and
// the final-normed hidden row they came from to tokenScorer, which returns the log-prob at the
// sampling temperature and the value head's output. Here they equal what the packed training
// forward computes for the same tokens (policyOutputs: logits / (T + 1e-7), log-softmax; the
// value head on the normed rows), over prompts whose first token comes from a prefill step
// (general path) and the rest from decode steps (fused path, and the generic one under LoRA).
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/infer/engine.js';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { applyLora } from '../../src/nn/lora.js';
import { Rng, Tensor, gatherRows, linear, logprobs, noGrad, scale, scope } from '../../src/tensor/index.js';
import { packRollout } from '../../src/train/ppo/rollout.js';
import { tokenScorer } from '../../src/train/stages/ppo.js';
import { TINY } from './sft-fixtures.js';

const PROMPTS = [5, 19, 34].map((n, k) => Int32Array.from({ length: n }, (_, i) => (i === 0 ? 1 : 40 + ((i * (7 + k)) % 50))));
const T = 0.7;

/** Log-probs at temperature T and values (head w) of the responses by the packed training forward. */
function forwardScores(model: LlamaForCausalLM, seqs: { prompt: Int32Array; response: Int32Array }[], w: Float32Array): { logprobs: number[]; values: number[] } {
  return noGrad(() => scope(() => {
    const p = packRollout(seqs);
    const h = model.hidden({ tokens: p.tokens, cuSeqlens: p.cuSeqlens });
    const rows = gatherRows(h, Tensor.from(p.rows, [p.rows.length], { dtype: 'i32' }));
    const lp = logprobs(scale(linear(rows, model.outputWeight), 1 / (T + 1e-7)), Tensor.from(p.ids, [p.ids.length], { dtype: 'i32' }));
    const v = linear(rows, Tensor.from(w, [1, w.length]));
    return { logprobs: Array.from(lp.toArray() as Float32Array), values: Array.from(v.toArray() as Float32Array) };
  }));
}

describe('PPO: old log-probs and values from the rollout engine', () => {
  for (const lora of [false, true]) {
    it(`equal the training forward's at the sampling temperature (${lora ? 'LoRA: generic decode' : 'fused decode'})`, async () => {
      const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 3 });
      if (lora) applyLora(model, { r: 4, alpha: 8, targetModules: 'all-linear', seed: 1 });
      const rng = new Rng(9);
      const w = Float32Array.from({ length: model.config.dim }, () => rng.normal());
      const engine = new Engine(model, { enablePrefixCaching: false, kvCacheBytes: 4 << 20, eosTokenId: null, hiddenStates: true });
      try {
        const scored = PROMPTS.map(() => tokenScorer(T, w));
        const outs = await Promise.all(PROMPTS.map((p, i) => engine.complete(p, { maxTokens: 9, temperature: T, seed: 11 + i, onToken: scored[i]!.onToken })));
        const seqs = PROMPTS.map((p, i) => ({ prompt: p, response: Int32Array.from(outs[i]!.tokens) }));
        const want = forwardScores(model, seqs, w);
        const got = { logprobs: scored.flatMap((s) => s.logprobs), values: scored.flatMap((s) => s.values) };
        expect(got.logprobs.length).toBe(3 * 9);
        got.logprobs.forEach((lp, k) => expect(Math.abs(lp - want.logprobs[k]!), `log-prob ${k}`).toBeLessThan(1e-4));
        got.values.forEach((v, k) => expect(Math.abs(v - want.values[k]!), `value ${k}`).toBeLessThan(1e-4 * (1 + Math.abs(want.values[k]!))));
        expect(new Set(got.values.map((v) => v.toFixed(3))).size).toBeGreaterThan(20); // a different hidden row per token
      } finally {
        engine.close();
        model.dispose();
      }
    });
  }

  it('an engine without hiddenStates hands no hidden row: the scorer refuses', async () => {
    const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 3 });
    const engine = new Engine(model, { enablePrefixCaching: false, kvCacheBytes: 4 << 20, eosTokenId: null });
    try {
      const s = tokenScorer(T, new Float32Array(model.config.dim));
      await expect(engine.complete(PROMPTS[0]!, { maxTokens: 2, temperature: T, seed: 1, onToken: s.onToken })).rejects.toThrow(/hidden row/);
    } finally {
      engine.close();
      model.dispose();
    }
  });
});
