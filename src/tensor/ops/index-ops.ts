// Differentiable indexing along a dimension on native/cpu/reduce.cpp: gather and scatterAdd,
// each the other's backward (as megablocks pairs its data-movement ops). Indices are i32 and
// checked in range by the binding.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectShape } from '../check.js';
import { Tensor } from '../tensor.js';
import { splitAt } from './reduce.js';

// index must have x's rank and x's sizes in every dimension but d (torch.gather also allows
// smaller ones; we ask for the exact shape, which keeps the kernel stride-free).
function expectIndex(op: string, x: Tensor, d: number, index: Tensor): void {
  expectDType(op, 'index', index, 'i32');
  if (index.shape.length !== x.shape.length || index.shape.some((s, i) => i !== d && s !== x.shape[i]))
    throw new PatentGPTError('E_SHAPE', `${op}: index ${index.describe()} must match ${x.describe()} in every dimension but ${d}`);
}

/**
 * out[..., k, ...] = x[..., index[..., k, ...], ...] along dimension `dim` (torch.gather): out has
 * index's shape. index (i32) matches x in every dimension but dim; its values lie in
 * [0, x.shape[dim]). The gradient scatter-adds into x.
 */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  expectDType('gather', 'x', x, 'f32');
  expectKernel('gather', ['gatherForward', 'scatterAdd'], x, index);
  const { d, outer, D, inner } = splitAt('gather', x, dim);
  expectIndex('gather', x, d, index);
  const K = index.shape[d]!;
  const out = Tensor.empty(index.shape, { device: x.device });
  addon().gatherForward(out.storage, out.offset, x.storage, x.offset, index.storage, index.offset, outer, D, K, inner);
  return record('gather', out, [x], [index], (g) => {
    const dx = Tensor.zeros(x.shape, { device: x.device });
    addon().scatterAdd(dx.storage, dx.offset, g.storage, g.offset, index.storage, index.offset, outer, D, K, inner);
    return [dx];
  });
}

/**
 * A copy of x with src added at index along dimension `dim` (torch.scatter_add):
 * out[..., index[..., k, ...], ...] += src[..., k, ...]. src and index share a shape that matches
 * x in every dimension but dim. Repeated indices add up, in a fixed order (deterministic).
 */
export function scatterAdd(x: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  expectDType('scatterAdd', 'x', x, 'f32');
  expectDType('scatterAdd', 'src', src, 'f32');
  expectKernel('scatterAdd', ['scatterAdd', 'gatherForward'], x, index, src);
  const { d, outer, D, inner } = splitAt('scatterAdd', x, dim);
  expectIndex('scatterAdd', x, d, index);
  expectShape('scatterAdd', 'src', src, index.shape);
  const K = index.shape[d]!;
  const out = x.clone();
  addon().scatterAdd(out.storage, out.offset, src.storage, src.offset, index.storage, index.offset, outer, D, K, inner);
  return record('scatterAdd', out, [x, src], [index], (g) => {
    let dsrc: Tensor | null = null;
    if (src.requiresGrad) {
      dsrc = Tensor.empty(index.shape, { device: x.device });
      addon().gatherForward(dsrc.storage, dsrc.offset, g.storage, g.offset, index.storage, index.offset, outer, D, K, inner);
    }
    return [g, dsrc];
  });
}
