// hidden(batch, ctx, rows): the last layer past its attention for some rows only (PPO's
// responses, DPO's scored tokens, a reward model's last tokens, SFT's assistant tokens) equals
// gathering those rows from the full forward, in value and in every parameter's gradient; and
// loss() on SFT-style targets (prompts ignored), which takes that path, equals the full-row loss.
import { describe, expect, it } from 'vitest';
import { LlamaForCausalLM, Rng, Tensor, gatherRows, mul, noGrad, preset, scope, sum, validateConfig, type PackedBatch } from '../../src/index.js';
import { expectClose } from '../helpers.js';

const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 64 });

function batch(seed: number, lengths: number[]): PackedBatch & { tokens: Int32Array } {
  const rng = new Rng(seed);
  const N = lengths.reduce((a, b) => a + b, 0);
  const cu = [0];
  for (const l of lengths) cu.push(cu.at(-1)! + l);
  return { tokens: Int32Array.from({ length: N }, () => rng.int(cfg.vocabSize)), cuSeqlens: Int32Array.from(cu) };
}

/** Every parameter's gradient after backward of sum(f(model) * weights), flattened in parameter order. */
function gradsOf(m: LlamaForCausalLM, f: () => Tensor): { value: Float32Array; grads: Float32Array[] } {
  m.zeroGrad();
  const value = scope(() => {
    const out = f();
    const w = Tensor.from(Float32Array.from({ length: out.size }, (_, i) => Math.sin(i * 0.37) + 0.5), out.shape);
    const l = sum(mul(out, w));
    l.backward();
    return Float32Array.from(out.toArray() as Float32Array);
  });
  return { value, grads: m.parameters().map((p) => (p.grad ? Float32Array.from(p.grad.toArray() as Float32Array) : new Float32Array(0))) };
}

describe('LlamaForCausalLM.hidden with rows', () => {
  const m = new LlamaForCausalLM(cfg, { seed: 4, initStd: 0.2 });
  const b = batch(7, [9, 14, 5]);
  const picks = [[3, 8, 9, 20, 27], [0], [27, 2, 2, 13]]; // ascending, a single row, unordered with a repeat

  for (const pick of picks)
    it(`equals the full forward's rows ${JSON.stringify(pick)}, and their gradients`, () => {
      const ids = () => Tensor.from(Int32Array.from(pick), [pick.length], { dtype: 'i32' });
      const full = gradsOf(m, () => gatherRows(m.hidden(b), ids()));
      const part = gradsOf(m, () => m.hidden(b, undefined, ids()));
      expect(part.value.length).toBe(pick.length * cfg.dim);
      expectClose(part.value, full.value, 1e-5);
      full.grads.forEach((g, i) => expectClose(part.grads[i]!, g, 1e-5));
    });

  it('loss() on targets that ignore the prompts equals the loss over every row', () => {
    const targets = new Int32Array(b.tokens.length).fill(-100);
    for (const [s, e] of [[4, 8], [12, 22], [25, 27]]) for (let i = s!; i < e!; i++) targets[i] = b.tokens[i + 1]!;
    const part = noGrad(() => scope(() => m.loss({ ...b, targets }).item()));
    // The same targets as a tensor take the full-row path.
    const full = noGrad(() => scope(() => m.loss({ ...b, targets: Tensor.from(targets, [targets.length], { dtype: 'i32' }) }).item()));
    expect(Math.abs(part - full)).toBeLessThan(1e-6);
    expect(part).toBeGreaterThan(1);
  });

  it('refuses rows in a paged step', () => {
    const a = m.model.layers.items[0]!.self_attn;
    const x = Tensor.zeros([2, cfg.dim]);
    expect(() => a.forward(x, { kind: 'paged' } as never, 0, Tensor.from(new Int32Array([0]), [1], { dtype: 'i32' }))).toThrow(/outRows is for packed/);
    x.dispose();
  });
});
