// Differentiable pointwise ops on native/cpu/elementwise.cpp: add (the residual), sub, mul, div,
// minimum, maximum with broadcasting; scale, neg, exp, log, sigmoid, logsigmoid, clamp; where;
// sum and mean of everything or over one dimension.
//
// Broadcasting (binary ops and where): the output shape is NumPy's broadcast of the operand
// shapes (shapes right-aligned, each dimension equal or 1 on one side). Each operand must then
// cover one contiguous block of the output's dimensions, being 1 (or absent) elsewhere, so the
// kernel can read it as x[(i / inner) % size] with no strides: a scalar or one-element tensor;
// a same-shape operand; a trailing shape ((C) or (T, C) against (B, T, C)); a column ((N, 1)
// against (N, C), as keepdim reductions give); (1, C) against (N, C). Shapes needing two blocks
// ((B, 1, C) against (B, T, C)) are refused with an E_SHAPE error naming the op and the shapes.
// A broadcast operand's gradient is summed back to its own shape.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectDType, expectKernel, type NativeOp } from '../check.js';
import { Tensor, numel, type Shape } from '../tensor.js';
import { reducedShape, splitAt, type ReduceOptions } from './reduce.js';

/** native/include/patentgpt/ops.h's BinaryOp. */
const BINARY_OP = { add: 0, sub: 1, mul: 2, div: 3, minimum: 4, maximum: 5 } as const;
/** native/include/patentgpt/ops.h's UnaryOp. */
const UNARY_OP = { neg: 0, exp: 1, log: 2, sigmoid: 3, logsigmoid: 4, clamp: 5 } as const;
type BinaryName = keyof typeof BINARY_OP;
type UnaryName = keyof typeof UNARY_OP;

/** How an operand is read for output element i: x[(i / inner) % size]. */
export interface BroadcastPattern {
  size: number;
  inner: number;
}

/** NumPy's broadcast of the shapes; throws naming the op when two dimensions conflict. */
export function broadcastShapes(op: string, ...operands: Tensor[]): number[] {
  const rank = Math.max(...operands.map((t) => t.shape.length));
  const out = new Array<number>(rank).fill(1);
  for (const t of operands) {
    const lead = rank - t.shape.length;
    t.shape.forEach((d, i) => {
      const o = out[lead + i]!;
      if (d === o || d === 1) return;
      if (o === 1) out[lead + i] = d;
      else throw new PatentGPTError('E_SHAPE', `${op}: shapes ${operands.map((x) => x.describe()).join(', ')} do not broadcast (dimension ${lead + i - rank}: ${o} vs ${d})`);
    });
  }
  return out;
}

/** t's read pattern within the output shape `out` (see the file comment for what is supported). */
export function broadcastPattern(op: string, t: Tensor, out: Shape): BroadcastPattern {
  const lead = out.length - t.shape.length;
  let first = -1;
  let last = -1;
  let gap = false;
  for (let d = 0; d < out.length; d++) {
    const own = d < lead ? 1 : t.shape[d - lead]!;
    if (out[d] === 1) continue;
    if (own === out[d]) {
      if (first >= 0 && gap) {
        throw new PatentGPTError('E_SHAPE', `${op}: ${t.describe()} against the output [${out.join(', ')}] would broadcast over a middle dimension; ` +
          `only a block of trailing, leading or contiguous dimensions broadcasts (reshape it or expand it first)`);
      }
      if (first < 0) first = d;
      last = d;
    } else if (first >= 0) gap = true;
  }
  if (first < 0) return { size: 1, inner: 1 };
  return { size: numel(out.slice(first, last + 1)), inner: numel(out.slice(last + 1)) };
}

function expectF32Kernel(op: string, kernels: NativeOp | readonly NativeOp[], names: string[], ...ts: Tensor[]): void {
  ts.forEach((t, i) => expectDType(op, names[i]!, t, 'f32'));
  expectKernel(op, kernels, ...ts);
}

/** A gradient at the output's shape summed down to an operand's (full stays as is). */
function reduceTo(full: Tensor, t: Tensor, p: BroadcastPattern): Tensor {
  if (p.size === full.size) return full;
  const r = Tensor.empty(t.shape, { device: t.device });
  addon().sumBroadcast(r.storage, r.offset, full.storage, full.offset, full.size, p.size, p.inner);
  return r;
}

function binary(name: BinaryName, a: Tensor, b: Tensor): Tensor {
  expectF32Kernel(name, ['binaryForward', 'binaryBackward'], ['a', 'b'], a, b);
  const shape = broadcastShapes(name, a, b);
  const pa = broadcastPattern(name, a, shape);
  const pb = broadcastPattern(name, b, shape);
  const out = Tensor.empty(shape, { device: a.device });
  const n = out.size;
  addon().binaryForward(out.storage, out.offset, a.storage, a.offset, b.storage, b.offset, n, pa.size, pa.inner, pb.size, pb.inner, BINARY_OP[name]);
  if (name === 'add' || name === 'sub') {
    // Linear: the local gradients are g and +-g, no saved values.
    return record(name, out, [a, b], [], (g) => [
      a.requiresGrad ? reduceTo(g, a, pa) : null,
      b.requiresGrad ? reduceTo(name === 'sub' ? neg(g) : g, b, pb) : null,
    ]);
  }
  return record(name, out, [a, b], [a, b], (g) => {
    const da = a.requiresGrad ? Tensor.empty(shape, { device: a.device }) : null;
    const db = b.requiresGrad ? Tensor.empty(shape, { device: a.device }) : null;
    addon().binaryBackward(da?.storage ?? null, da?.offset ?? 0, db?.storage ?? null, db?.offset ?? 0, g.storage, g.offset,
      a.storage, a.offset, b.storage, b.offset, n, pa.size, pa.inner, pb.size, pb.inner, BINARY_OP[name]);
    return [da && reduceTo(da, a, pa), db && reduceTo(db, b, pb)];
  });
}

/** a + b with broadcasting (see the file comment); same shapes take the residual fast path. */
export function add(a: Tensor, b: Tensor): Tensor {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) return binary('add', a, b);
  expectF32Kernel('add', ['addForward', 'binaryBackward'], ['a', 'b'], a, b);
  const out = Tensor.empty(a.shape, { device: a.device });
  addon().addForward(out.storage, out.offset, a.storage, a.offset, b.storage, b.offset, a.size);
  return record('add', out, [a, b], [], (g) => [g, g]);
}

/** a - b with broadcasting (see the file comment). */
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary('sub', a, b);
}

/** a * b elementwise with broadcasting (see the file comment). */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('mul', a, b);
}

/** a / b elementwise with broadcasting (see the file comment); IEEE results for b = 0. */
export function div(a: Tensor, b: Tensor): Tensor {
  return binary('div', a, b);
}

/** Elementwise min with broadcasting; NaN propagates; ties split the gradient in halves (as torch). */
export function minimum(a: Tensor, b: Tensor): Tensor {
  return binary('minimum', a, b);
}

/** Elementwise max with broadcasting; NaN propagates; ties split the gradient in halves (as torch). */
export function maximum(a: Tensor, b: Tensor): Tensor {
  return binary('maximum', a, b);
}

/** x * alpha for a constant alpha. */
export function scale(x: Tensor, alpha: number): Tensor {
  expectF32Kernel('scale', 'scale', ['x'], x);
  const out = x.clone();
  addon().scale(out.storage, out.offset, alpha, out.size);
  return record('scale', out, [x], [], (g) => [scale(g, alpha)]);
}

function unary(name: UnaryName, x: Tensor, lo = 0, hi = 0): Tensor {
  expectF32Kernel(name, ['unaryForward', 'unaryBackward'], ['x'], x);
  const out = Tensor.empty(x.shape, { device: x.device });
  const code = UNARY_OP[name];
  addon().unaryForward(out.storage, out.offset, x.storage, x.offset, x.size, code, lo, hi);
  // Backward reads the output (exp, sigmoid), the input (log, logsigmoid, clamp) or nothing (neg).
  const readsOut = name === 'exp' || name === 'sigmoid';
  const readsX = !readsOut && name !== 'neg';
  return record(name, out, [x], readsOut ? [out] : readsX ? [x] : [], (g) => {
    const dx = Tensor.empty(x.shape, { device: x.device });
    addon().unaryBackward(dx.storage, dx.offset, g.storage, g.offset, readsX ? x.storage : null, x.offset,
      readsOut ? out.storage : null, out.offset, x.size, code, lo, hi);
    return [dx];
  });
}

/** -x. */
export function neg(x: Tensor): Tensor {
  return unary('neg', x);
}

/** e^x. */
export function exp(x: Tensor): Tensor {
  return unary('exp', x);
}

/** Natural log (NaN below 0, -Infinity at 0, as IEEE). */
export function log(x: Tensor): Tensor {
  return unary('log', x);
}

/** 1 / (1 + e^-x), stable for large |x|. */
export function sigmoid(x: Tensor): Tensor {
  return unary('sigmoid', x);
}

/** log(sigmoid(x)) = min(x, 0) - log1p(e^-|x|): finite for any x (DPO and reward-model losses). */
export function logsigmoid(x: Tensor): Tensor {
  return unary('logsigmoid', x);
}

/** x limited to [min, max]; the gradient passes where min <= x <= max (as torch.clamp). */
export function clamp(x: Tensor, min = -Infinity, max = Infinity): Tensor {
  if (Number.isNaN(min) || Number.isNaN(max) || min > max)
    throw new PatentGPTError('E_ARGUMENT', `clamp: bounds [${min}, ${max}] must be numbers with min <= max`);
  return unary('clamp', x, min, max);
}

/**
 * cond ? a : b elementwise. cond is an i32 mask (nonzero = true) with the output's shape; a and b
 * broadcast against it as binary ops do (see the file comment). cond takes no gradient.
 */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  expectDType('where', 'cond', cond, 'i32');
  expectF32Kernel('where', ['whereForward', 'whereBackward'], ['a', 'b'], a, b);
  expectKernel('where', ['whereForward', 'whereBackward'], a, cond);
  const shape = broadcastShapes('where', cond, a, b);
  if (cond.size !== numel(shape))
    throw new PatentGPTError('E_SHAPE', `where: cond ${cond.describe()} must have the output's shape [${shape.join(', ')}] (a ${a.describe()}, b ${b.describe()})`);
  const pa = broadcastPattern('where', a, shape);
  const pb = broadcastPattern('where', b, shape);
  const out = Tensor.empty(shape, { device: a.device });
  const n = out.size;
  addon().whereForward(out.storage, out.offset, cond.storage, cond.offset, a.storage, a.offset, b.storage, b.offset, n, pa.size, pa.inner, pb.size, pb.inner);
  return record('where', out, [a, b], [cond], (g) => {
    const da = a.requiresGrad ? Tensor.empty(shape, { device: a.device }) : null;
    const db = b.requiresGrad ? Tensor.empty(shape, { device: a.device }) : null;
    addon().whereBackward(da?.storage ?? null, da?.offset ?? 0, db?.storage ?? null, db?.offset ?? 0, g.storage, g.offset, cond.storage, cond.offset, n);
    return [da && reduceTo(da, a, pa), db && reduceTo(db, b, pb)];
  });
}

function sumOver(op: string, x: Tensor, dim: number, keepdim: boolean, mean: boolean): Tensor {
  expectF32Kernel(op, ['sumDimForward', 'sumDimBackward'], ['x'], x);
  const { d, outer, D, inner } = splitAt(op, x, dim);
  const s = mean ? 1 / D : 1; // the mean of an empty dimension is NaN, as in torch
  const out = Tensor.empty(reducedShape(x, d, keepdim), { device: x.device });
  addon().sumDimForward(out.storage, out.offset, x.storage, x.offset, outer, D, inner, s);
  return record(op, out, [x], [], (g) => {
    const dx = Tensor.empty(x.shape, { device: x.device });
    addon().sumDimBackward(dx.storage, dx.offset, g.storage, g.offset, outer, D, inner, s);
    return [dx];
  });
}

/**
 * Sum of all elements as a one-element tensor, or over dimension `dim` (negative counts from the
 * end), dropping it unless `keepdim`. Accumulated in f64.
 */
export function sum(x: Tensor, dim?: number, opts: ReduceOptions = {}): Tensor {
  if (dim !== undefined) return sumOver('sum', x, dim, opts.keepdim ?? false, false);
  expectF32Kernel('sum', 'sum', ['x'], x);
  const out = Tensor.full([], addon().sum(x.storage, x.offset, x.size), { device: x.device });
  return record('sum', out, [x], [], (g) => [Tensor.full(x.shape, g.item(), { device: x.device })]);
}

/** Mean of all elements as a one-element tensor, or over dimension `dim` (as sum()). */
export function mean(x: Tensor, dim?: number, opts: ReduceOptions = {}): Tensor {
  if (dim !== undefined) return sumOver('mean', x, dim, opts.keepdim ?? false, true);
  const total = sum(x);
  const out = scale(total, 1 / Math.max(1, x.size));
  total.dispose();
  return out;
}
