// PPO samples its rollouts with the package's Engine from the policy module the optimizer updates
// in place. Here: after an optimizer step changes the weights, the same Engine (its fused decode
// plan prepared on the old step) samples from the NEW weights: the log-probs it reports for its
// greedy tokens equal those of the training forward on the same tokens, for plain layers (fused
// decode path) and for LoRA-adapted ones (generic path, adapters applied). And the reference
// pass with the adapters detached equals the base model. With prefix caching on, the engine would
// serve the prompt's cached blocks, computed by the old weights (this test then fails): PPO turns it off.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/infer/engine.js';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { applyLora, loraLayers, withAdaptersDisabled } from '../../src/nn/lora.js';
import { Tensor, logprobs, noGrad, scope } from '../../src/tensor/index.js';
import { createOptimizer } from '../../src/train/optimizer.js';
import { TINY } from './sft-fixtures.js';

// 34 tokens: two full KV blocks of 16, which a prefix cache would keep (and serve stale after a step)
const PROMPT = Int32Array.from({ length: 34 }, (_, i) => (i === 0 ? 1 : 40 + ((i * 7) % 50)));

/** Log-probs of `tokens` after the prompt by the packed training forward. */
function forwardLogprobs(model: LlamaForCausalLM, tokens: number[]): number[] {
  return noGrad(() => scope(() => {
    const all = Int32Array.from([...PROMPT, ...tokens]);
    const logits = model.forward({ tokens: all }); // (N, V)
    const rows = logits.narrow(PROMPT.length - 1, tokens.length);
    return Array.from(logprobs(rows, Tensor.from(Int32Array.from(tokens), [tokens.length], { dtype: 'i32' })).toArray() as Float32Array);
  }));
}

async function engineLogprobs(engine: Engine): Promise<{ tokens: number[]; logprobs: number[] }> {
  const tokens: number[] = [], lps: number[] = [];
  for await (const d of engine.generate(PROMPT, { maxTokens: 8, temperature: 0, ignoreEos: true, logprobs: 0 })) {
    tokens.push(...d.tokens);
    lps.push(...d.logprobs!.map((l) => l.logprob));
  }
  return { tokens, logprobs: lps };
}

/** One AdamW step on a made-up loss: every trainable weight moves, in place. */
function step(model: LlamaForCausalLM, params: [string, Tensor][]): void {
  const opt = createOptimizer(params, { type: 'adamw', weightDecay: 0 });
  scope(() => {
    const tokens = Int32Array.from([...PROMPT, 7, 8, 9]);
    const loss = model.loss({ tokens, targets: Int32Array.from([...tokens.slice(1), -100]) });
    loss.backward();
  });
  opt.step(5e-2);
  opt.zeroGrad();
  opt.dispose();
}

describe('the rollout engine samples from the current policy weights', () => {
  for (const lora of [false, true]) {
    it(lora ? 'LoRA-adapted layers (generic path, adapters applied)' : 'plain layers (fused decode path)', async () => {
      const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 2 });
      const params = lora ? applyLora(model, { r: 4, alpha: 8, targetModules: 'all-linear', seed: 1 }) : model.namedParameters();
      expect(model.model.layers.items[0]!.decodeWeights() === null).toBe(lora);
      const engine = new Engine(model, { enablePrefixCaching: false, kvCacheBytes: 4 << 20, eosTokenId: null });
      try {
        const before = await engineLogprobs(engine);
        step(model, params);
        if (lora) step(model, params); // B starts at 0: a second step moves the adapters' output
        const after = await engineLogprobs(engine);
        const want = forwardLogprobs(model, after.tokens);
        after.logprobs.forEach((lp, i) => expect(Math.abs(lp - want[i]!), `token ${i}`).toBeLessThan(1e-4));
        expect(after.logprobs).not.toEqual(before.logprobs); // the step changed what the engine computes
        if (lora) {
          const base = withAdaptersDisabled(model, () => forwardLogprobs(model, after.tokens));
          for (const [, l] of loraLayers(model)) l.adapter.lora_B.weight.write(new Float32Array(l.adapter.lora_B.weight.size));
          expect(forwardLogprobs(model, after.tokens)).toEqual(base); // B = 0: the adapted model is the base
          expect(loraLayers(model).length).toBeGreaterThan(0); // and the adapters are back after the detached pass
        }
      } finally {
        engine.close();
        model.dispose();
      }
    });
  }
});
