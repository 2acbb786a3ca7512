// Differentiable reductions on native/cpu/reduce.cpp: max over a dimension (values and
// indices), softmax and log_softmax over the last dimension (sum and mean, of everything or
// over a dimension, live in elementwise.ts with the other sums). A tensor is viewed as
// (outer, D, inner) around the reduced dimension.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType } from '../check.js';
import { Tensor } from '../tensor.js';

export interface ReduceOptions {
  /** Keep the reduced dimension with size 1 (so the result broadcasts against the input). */
  keepdim?: boolean;
}

/** @internal (outer, D, inner) of x around dimension `dim` (negative counts from the end). */
export function splitAt(op: string, x: Tensor, dim: number): { d: number; outer: number; D: number; inner: number } {
  const rank = x.shape.length;
  if (!Number.isInteger(dim) || dim < -rank || dim >= rank)
    throw new PatentGPTError('E_SHAPE', `${op}: dim ${dim} is outside ${x.describe()} (rank ${rank}; use -${rank}..${rank - 1})`);
  const d = dim < 0 ? dim + rank : dim;
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < d; i++) outer *= x.shape[i]!;
  for (let i = d + 1; i < rank; i++) inner *= x.shape[i]!;
  return { d, outer, D: x.shape[d]!, inner };
}

/** @internal the shape after reducing dimension d. */
export function reducedShape(x: Tensor, d: number, keepdim: boolean): number[] {
  return keepdim ? x.shape.map((s, i) => (i === d ? 1 : s)) : x.shape.filter((_, i) => i !== d);
}

function expectF32(op: string, x: Tensor): void {
  expectDType(op, 'x', x, 'f32');
  expectKernel(op, ['maxDimForward', 'scatterAdd', 'softmaxForward', 'softmaxBackward', 'logSoftmaxForward', 'logSoftmaxBackward'], x);
}

/**
 * Maximum over dimension `dim` and where it is (the first index on ties; NaN wins, as torch).
 * values is differentiable (the gradient goes to that index); indices is i32.
 */
export function max(x: Tensor, dim: number, opts: ReduceOptions = {}): { values: Tensor; indices: Tensor } {
  expectF32('max', x);
  const { d, outer, D, inner } = splitAt('max', x, dim);
  if (D === 0 && outer * inner > 0) throw new PatentGPTError('E_SHAPE', `max: dimension ${dim} of ${x.describe()} is empty`);
  const shape = reducedShape(x, d, opts.keepdim ?? false);
  const values = Tensor.empty(shape, { device: x.device });
  const indices = Tensor.empty(shape, { dtype: 'i32', device: x.device });
  addon().maxDimForward(values.storage, values.offset, indices.storage, indices.offset, x.storage, x.offset, outer, D, inner);
  record('max', values, [x], [indices], (g) => {
    const dx = Tensor.zeros(x.shape, { device: x.device });
    addon().scatterAdd(dx.storage, dx.offset, g.storage, g.offset, indices.storage, indices.offset, outer, D, 1, inner);
    return [dx];
  });
  return { values, indices };
}

function rowsOp(op: 'softmax' | 'logSoftmax', x: Tensor): Tensor {
  expectF32(op, x);
  if (x.shape.length === 0) throw new PatentGPTError('E_SHAPE', `${op}: x ${x.describe()} has no last dimension to normalise over`);
  const C = x.shape[x.shape.length - 1]!;
  const N = C === 0 ? 0 : x.size / C;
  const out = Tensor.empty(x.shape, { device: x.device });
  const fwd = op === 'softmax' ? addon().softmaxForward : addon().logSoftmaxForward;
  fwd(out.storage, out.offset, x.storage, x.offset, N, C);
  return record(op, out, [x], [out], (g) => {
    const dx = Tensor.empty(x.shape, { device: x.device });
    const bwd = op === 'softmax' ? addon().softmaxBackward : addon().logSoftmaxBackward;
    bwd(dx.storage, dx.offset, g.storage, g.offset, out.storage, out.offset, N, C);
    return [dx];
  });
}

/** Softmax over the last dimension (row maximum subtracted, so large logits do not overflow). */
export function softmax(x: Tensor): Tensor {
  return rowsOp('softmax', x);
}

/** log(softmax(x)) over the last dimension, computed as x - logsumexp(x) (stable). */
export function logSoftmax(x: Tensor): Tensor {
  return rowsOp('logSoftmax', x);
}
