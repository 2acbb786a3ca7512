// Differentiable elementwise ops and reductions: add (residual), scale, sum, mean.
import { addon } from '../addon.js';
import { record } from '../autograd.js';
import { expectCpu, expectDType, expectSameShape } from '../check.js';
import { Tensor } from '../tensor.js';

/** a + b, same shapes (the residual connection). */
export function add(a: Tensor, b: Tensor): Tensor {
  expectSameShape('add', a, b);
  expectDType('add', 'a', a, 'f32');
  expectDType('add', 'b', b, 'f32');
  expectCpu('add', a, b);
  const out = Tensor.empty(a.shape);
  addon().addForward(out.storage, out.offset, a.storage, a.offset, b.storage, b.offset, a.size);
  return record('add', out, [a, b], [], (g) => [g, g]);
}

/** x * alpha for a constant alpha. */
export function scale(x: Tensor, alpha: number): Tensor {
  expectDType('scale', 'x', x, 'f32');
  expectCpu('scale', x);
  const out = x.clone();
  addon().scale(out.storage, out.offset, alpha, out.size);
  return record('scale', out, [x], [], (g) => [scale(g, alpha)]);
}

/** Sum of all elements, as a one-element tensor. */
export function sum(x: Tensor): Tensor {
  expectDType('sum', 'x', x, 'f32');
  expectCpu('sum', x);
  const out = Tensor.full([], addon().sum(x.storage, x.offset, x.size));
  return record('sum', out, [x], [], (g) => [Tensor.full(x.shape, g.item())]);
}

/** Mean of all elements, as a one-element tensor. */
export function mean(x: Tensor): Tensor {
  return scale(sum(x), 1 / Math.max(1, x.size));
}
