// Autograd per loss: backward(root) walks and releases only root's graph, so several losses built
// from shared parameters (reward-model pairs, PPO policy + value, DPO chosen/rejected) can be
// back-propagated one after the other.
import { afterEach, describe, expect, it } from 'vitest';
import {
  Tensor, add, backward, clearTape, linear, logprobs, memoryStats, rmsnorm, scale, scope, sum, swiglu, tapeLength,
} from '../src/tensor/index.js';
import { expectClose, f32, randomArray } from './helpers.js';

afterEach(() => clearTape());

const grad = (t: Tensor): number[] => Array.from(t.grad!.toArray() as Float32Array);
function resetGrads(...ts: Tensor[]): void {
  for (const t of ts) {
    t.grad?.dispose();
    t.grad = null;
  }
}

// A small policy/value pair over one trunk: h = rmsnorm(x @ W^T, g), policy log-probs of ids
// from h @ P^T, value = sum of swiglu(h @ A^T, h @ B^T).
function params(): Tensor[] {
  return [
    f32(randomArray(6 * 4, 1, 0.3), [6, 4], true), f32(randomArray(6, 2, 0.1).map((v) => 1 + v), [6], true),
    f32(randomArray(5 * 6, 3, 0.3), [5, 6], true), f32(randomArray(3 * 6, 4, 0.3), [3, 6], true),
    f32(randomArray(3 * 6, 5, 0.3), [3, 6], true),
  ];
}
const x = (): Tensor => f32(randomArray(3 * 4, 6), [3, 4]);
const ids = (): Tensor => Tensor.from(Int32Array.from([1, 4, 0]));
function trunk(p: Tensor[], input: Tensor): Tensor {
  return rmsnorm(linear(input, p[0]!), p[1]!);
}
const policyLoss = (p: Tensor[], h: Tensor, i: Tensor): Tensor => scale(sum(logprobs(linear(h, p[2]!), i)), -1);
const valueLoss = (p: Tensor[], h: Tensor): Tensor => sum(swiglu(linear(h, p[3]!), linear(h, p[4]!)));

describe('autograd per graph', () => {
  it('two losses over a shared trunk backward separately, with the grads of separately built graphs', () => {
    const p = params();
    const input = x();
    const i = ids();
    // Reference: each loss built (and its trunk recorded) on its own.
    policyLoss(p, trunk(p, input), i).backward();
    const refPolicy = p.map((t) => (t.grad ? grad(t) : null));
    resetGrads(...p);
    valueLoss(p, trunk(p, input)).backward();
    const refValue = p.map((t) => (t.grad ? grad(t) : null));
    resetGrads(...p);
    expect(tapeLength()).toBe(0);

    // One trunk, two losses: the first backward must leave the second's graph intact.
    const h = trunk(p, input);
    const lp = policyLoss(p, h, i);
    const lv = valueLoss(p, h);
    lp.backward();
    p.forEach((t, k) => {
      if (refPolicy[k]) expectClose(grad(t), refPolicy[k]!, 1e-6, 1e-5, `policy grad of param ${k}`);
      else expect(t.grad).toBeNull();
    });
    resetGrads(...p);
    lv.backward();
    p.forEach((t, k) => {
      if (refValue[k]) expectClose(grad(t), refValue[k]!, 1e-6, 1e-5, `value grad of param ${k}`);
      else expect(t.grad).toBeNull();
    });
    expect(tapeLength()).toBe(0);
  });

  it('a node shared by two losses survives the first backward and is released after the last', () => {
    const before = memoryStats().cpu.liveCount;
    const w = f32([1, 2, 3], [3], true);
    const h = scale(w, 2); // shared
    const l1 = sum(h);
    const h3 = scale(h, 3);
    const l2 = sum(h3);
    expect(tapeLength()).toBe(4);
    l1.backward();
    expect(tapeLength()).toBe(3); // l1's sum released; h's node and l2's graph remain
    expect(h.node).not.toBeNull();
    expect(grad(w)).toEqual([2, 2, 2]);
    l2.backward();
    expect(tapeLength()).toBe(0);
    expect(h.node).toBeNull();
    expect(grad(w)).toEqual([8, 8, 8]); // 2 + 2 * 3, accumulated
    expect(() => l2.backward()).toThrow(/does not require grad|released/);
    [w.grad!, w, h, h3, l1, l2].forEach((t) => t.dispose());
    expect(memoryStats().cpu.liveCount).toBe(before);
  });

  it('backward walks only the root graph: an unrelated graph keeps its nodes and saved tensors', () => {
    const a = f32([1, -2], [2], true);
    const b = f32([3, 4], [2], true);
    const la = sum(swiglu(a, a));
    const lb = sum(swiglu(b, add(b, b)));
    const nb = tapeLength() - 2;
    la.backward();
    expect(tapeLength()).toBe(nb);
    expect(b.grad).toBeNull();
    lb.backward();
    expect(tapeLength()).toBe(0);
    expect(a.grad).not.toBeNull();
    expect(b.grad).not.toBeNull();
  });

  it('retainGraph keeps the graph for a second backward, which then releases it', () => {
    const w = f32([0.5, -1, 2], [3], true);
    const loss = sum(swiglu(w, scale(w, 1.5)));
    const n = tapeLength();
    loss.backward(undefined, { retainGraph: true }); // the method takes the options too
    const once = grad(w);
    expect(tapeLength()).toBe(n);
    backward(loss);
    expectClose(grad(w), once.map((v) => 2 * v), 1e-6, 1e-6, 'twice the gradient');
    expect(tapeLength()).toBe(0);
  });

  it('a loss consumed by a later node keeps its graph until the later node backward', () => {
    const w = f32([1, 2], [2], true);
    const l1 = sum(scale(w, 2));
    const total = add(l1, sum(w));
    l1.backward();
    expect(grad(w)).toEqual([2, 2]);
    total.backward();
    expect(grad(w)).toEqual([5, 5]);
    expect(tapeLength()).toBe(0);
  });

  it('a side computation recorded inside a scope and not returned is released when the scope ends', () => {
    const before = memoryStats().cpu.liveCount;
    const w = f32([1, 2, 3], [3], true);
    const loss = scope(() => {
      sum(swiglu(w, w)); // e.g. a metric built from the parameters with grad on, then dropped
      return sum(scale(w, 2));
    });
    expect(tapeLength()).toBe(2);
    loss.backward();
    expect(tapeLength()).toBe(0);
    [w.grad!, w, loss].forEach((t) => t.dispose());
    expect(memoryStats().cpu.liveCount).toBe(before);
  });

  it('clearTape releases every graph and what they saved', () => {
    const before = memoryStats().cpu.liveCount;
    const w = f32([1, 2, 3], [3], true);
    const l1 = scope(() => sum(swiglu(w, w)));
    const l2 = scope(() => sum(swiglu(w, scale(w, 2))));
    expect(tapeLength()).toBeGreaterThan(0);
    clearTape();
    expect(tapeLength()).toBe(0);
    [w, l1, l2].forEach((t) => t.dispose());
    expect(memoryStats().cpu.liveCount).toBe(before);
  });

  it('a deep chain (20k nodes) backward without recursion limits', () => {
    const w = f32([1], [1], true);
    let y = w;
    const made: Tensor[] = [];
    for (let k = 0; k < 20000; k++) made.push((y = scale(y, 1)));
    sum(y).backward();
    expect(grad(w)).toEqual([1]);
    expect(tapeLength()).toBe(0);
    made.forEach((t) => t.dispose());
  });
});
