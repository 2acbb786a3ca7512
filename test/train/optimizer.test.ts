// AdamW over named parameters: follows the float64 torch reference with clipping and the decay
// rule, accumulates gradients across backward calls, and its state round-trips exactly.
import { describe, expect, it } from 'vitest';
import { Tensor, clipGradNorm, scale, sum } from '../../src/tensor/index.js';
import { AdamW, defaultDecayRule } from '../../src/train/optimizer.js';
import { adamwRef, type AdamwRefState } from '../reference/kernels.js';
import { expectClose, numbers, randomArray } from '../helpers.js';

function params(seed: number): [string, Tensor][] {
  return [
    ['model.embed_tokens.weight', Tensor.from(Float32Array.from(randomArray(12, seed)), [4, 3], { requiresGrad: true })],
    ['model.layers.0.input_layernorm.weight', Tensor.from(Float32Array.from(randomArray(3, seed + 1)), [3], { requiresGrad: true })],
    ['lm_head.bias', Tensor.from(Float32Array.from(randomArray(4, seed + 2)), [4], { requiresGrad: true })],
  ];
}

function setGrads(ps: [string, Tensor][], seed: number, scale: number): Float64Array[] {
  return ps.map(([, p], i) => {
    const g = randomArray(p.size, seed * 10 + i, scale);
    p.grad?.dispose();
    p.grad = Tensor.from(Float32Array.from(g), p.shape);
    return Float64Array.from(Float32Array.from(g));
  });
}

describe('AdamW', () => {
  it('applies weight decay to matrices and embeddings only', () => {
    const ps = params(1);
    expect(ps.map(([n, p]) => defaultDecayRule(n, p))).toEqual([true, false, false]);
    expect(new AdamW(ps).parameters.map((p) => p.decay)).toEqual([true, false, false]);
  });

  it('follows torch AdamW with global-norm clipping over several steps', () => {
    const ps = params(3);
    const hp = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
    const opt = new AdamW(ps, { ...hp, maxGradNorm: 1.0 });
    const ref: AdamwRefState[] = ps.map(([, p]) => ({ param: Float64Array.from(numbers(p.toArray())), m: new Float64Array(p.size), v: new Float64Array(p.size) }));
    for (let step = 1; step <= 6; step++) {
      const grads = setGrads(ps, step, step % 2 ? 3 : 0.01); // some steps clip, some do not
      const norm = Math.sqrt(grads.reduce((a, g) => a + g.reduce((b, x) => b + x * x, 0), 0));
      const scale = Math.min(1, Math.fround(1.0 / (norm + 1e-6)));
      const lr = 1e-2 * step;
      const r = opt.step(lr);
      expect(r.skipped).toBe(false);
      expect(r.gradNorm).toBeCloseTo(norm, 4);
      expect(r.clipScale).toBeCloseTo(scale, 6);
      ps.forEach(([name, p], i) =>
        adamwRef(ref[i]!, grads[i]!, { ...hp, lr, step, gradScale: scale, weightDecay: defaultDecayRule(name, p) ? 0.1 : 0 }),
      );
      ps.forEach(([n, p], i) => expectClose(numbers(p.toArray()), ref[i]!.param, 1e-6, 1e-5, n));
    }
    expect(opt.stepCount).toBe(6);
  });

  it('folding the clip into the step equals clipGradNorm then an unclipped step', () => {
    const a = params(5);
    const b = params(5);
    setGrads(a, 9, 4);
    setGrads(b, 9, 4);
    const oa = new AdamW(a, { maxGradNorm: 0.5 });
    const ob = new AdamW(b);
    oa.step(0.1);
    clipGradNorm(b.map(([, p]) => p.grad!), 0.5);
    ob.step(0.1);
    a.forEach(([, p], i) => expect([...p.toArray()]).toEqual([...b[i]![1].toArray()]));
  });

  it('gradients accumulate across backward calls until zeroGrad', () => {
    const w = Tensor.from(new Float32Array([1, 2, 3]), [3], { requiresGrad: true });
    const opt = new AdamW([['w', w]]);
    for (let k = 1; k <= 3; k++) sum(scale(w, k)).backward();
    expect([...opt.gradients()[0]!.toArray()]).toEqual([6, 6, 6]);
    opt.zeroGrad();
    expect(w.grad).toBeNull();
    expect(opt.gradients()).toEqual([]);
  });

  it('skips a step with a non-finite gradient norm', () => {
    const ps = params(7);
    const opt = new AdamW(ps);
    const before = ps.map(([, p]) => [...p.toArray()]);
    setGrads(ps, 1, 1);
    ps[0]![1].grad = Tensor.from(new Float32Array(12).fill(Number.NaN), [4, 3]);
    const r = opt.step(0.1);
    expect(r.skipped).toBe(true);
    expect(opt.stepCount).toBe(0);
    ps.forEach(([, p], i) => expect([...p.toArray()]).toEqual(before[i]));
  });

  it('exported state restores an identical continuation', () => {
    const a = params(11);
    const oa = new AdamW(a, { maxGradNorm: 1 });
    for (let s = 1; s <= 3; s++) {
      setGrads(a, s, 1);
      oa.step(0.01);
    }
    const state = oa.exportState();
    const b = a.map(([n, p]) => [n, Tensor.from(p.toArray() as Float32Array, p.shape, { requiresGrad: true })] as [string, Tensor]);
    const ob = new AdamW(b, { maxGradNorm: 1 });
    ob.loadState(state);
    expect(ob.stepCount).toBe(3);
    for (let s = 4; s <= 6; s++) {
      setGrads(a, s, 1);
      setGrads(b, s, 1);
      oa.step(0.01);
      ob.step(0.01);
    }
    a.forEach(([, p], i) => expect([...p.toArray()]).toEqual([...b[i]![1].toArray()]));
  });

  it('refuses a state for other parameters, naming the parameter', () => {
    const oa = new AdamW(params(1));
    const st = oa.exportState();
    const other = new AdamW([['x', Tensor.zeros([2, 2], { requiresGrad: true })]]);
    expect(() => other.loadState(st)).toThrow(/no moments for parameter x/);
    st.entries[0]!.shape = [3, 4];
    expect(() => new AdamW(params(1)).loadState(st)).toThrow(/model.embed_tokens.weight has shape \[3, 4\]/);
  });
});
