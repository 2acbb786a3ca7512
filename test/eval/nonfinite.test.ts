// A model that is not finite is refused with a clear error instead of being scored: NaN
// log-likelihoods make every argmax keep its first candidate, so such a model used to "answer A"
// to everything and score the share of A answers (27.5% on the patent agent exam).
import { describe, expect, it } from 'vitest';
import {
  BYTE_VOCAB_SIZE, ByteTokenizer, LlamaForCausalLM, PatentGPTError, Scorer, Tensor, evaluateMc, preset, validateConfig, type McTask,
} from '../../src/index.js';

const cfg = validateConfig({ ...preset('tiny').config, vocabSize: BYTE_VOCAB_SIZE, dim: 32, nHeads: 4, nKvHeads: 2, ffnDim: 64, nLayers: 1, maxSeqLen: 128 });
const tok = new ByteTokenizer();
const task: McTask = {
  name: 'toy', skipped: [], files: [],
  docs: Array.from({ length: 4 }, (_, i) => ({ id: `q${i}`, question: `Question ${i}?`, choices: ['alpha', 'beta', 'gamma', 'delta'], answer: [(i + 1) % 4], multi: false, category: 'c' })),
};

/** Replaces parameter `name` by its values with `edit` applied. */
function edit(model: LlamaForCausalLM, name: string, f: (w: Float32Array) => void): void {
  const t = model.namedParameters().find(([n]) => n === name)![1];
  const w = t.toArray() as Float32Array;
  f(w);
  model.setParameter(name, Tensor.from(w, t.shape));
}

function thrown(f: () => unknown): PatentGPTError {
  try {
    f();
  } catch (err) {
    return err as PatentGPTError;
  }
  throw new Error('expected an error');
}

describe('non-finite models are refused', () => {
  it('a NaN weight: the scorer names the parameter instead of scoring', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 3 });
    edit(model, 'model.layers.0.mlp.down_proj.weight', (w) => (w[17] = NaN));
    const err = thrown(() => evaluateMc(new Scorer(model, tok), task));
    expect(err).toBeInstanceOf(PatentGPTError);
    expect(err.code).toBe('E_NONFINITE');
    expect(err.message).toMatch(/model\.layers\.0\.mlp\.down_proj\.weight.*1 non-finite value.*NaN at index 17/);
    model.dispose();
  });

  it('an infinite weight likewise', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 3 });
    edit(model, 'model.norm.weight', (w) => (w[0] = -Infinity));
    expect(() => new Scorer(model, tok)).toThrow(/model\.norm\.weight.*-Infinity/);
    model.dispose();
  });

  it('finite weights whose activations overflow: the non-finite log-likelihoods are refused', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 3 });
    edit(model, 'model.norm.weight', (w) => w.fill(3e38));
    for (const sharedContexts of [true, false]) {
      const err = thrown(() => evaluateMc(new Scorer(model, tok, { sharedContexts }), task));
      expect(err.code).toBe('E_NONFINITE');
      expect(err.message).toMatch(/log-likelihood of request \d+ is (NaN|-?Infinity)/);
    }
    model.dispose();
  });

  it('a finite model still scores', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 3 });
    const res = evaluateMc(new Scorer(model, tok), task);
    expect(res.docs.every((d) => d.loglik.every(Number.isFinite))).toBe(true);
    model.dispose();
  });
});
