// Dropless sparse mixture of experts (MegaBlocks), as five ops over native/cpu/moe.cpp:
//   moeRouter    logits (N, E) -> top-k expert ids (N, k) and their weights (N, k)
//   moeDispatch  ids -> a plan: the slots sorted by expert (stable), per-expert row offsets
//   moePermute   x (N, C) -> xs (N*k, C), the tokens' rows gathered into expert order
//   moeGroupedMatmul  xs (N*k, in) with W (E, out, in), or E (out, in) tensors (each read from
//                its own storage), -> (N*k, out), one GEMM per expert group
//   moeCombine   y (N*k, C) with the weights -> (N, C), the weighted un-permute
// A slot is one (token n, choice j) pair, numbered n * k + j. No token is dropped for capacity:
// an expert's group is as large as the tokens that chose it, possibly empty.
import { PatentGPTError } from '../../errors.js';
import { addon, type TensorArg } from '../../native/loader.js';
import { isGradEnabled, record } from '../autograd.js';
import { expectDType, expectKernel, expectRank, expectShape } from '../check.js';
import { Tensor } from '../tensor.js';

/** The router's choice: expert ids (i32, not differentiable) and their weights (f32). */
export interface MoeRouting {
  /** (N, k) i32: each token's experts, by descending logit; ties go to the lower id. */
  indices: Tensor;
  /** (N, k) f32: each choice's weight, differentiable in the logits. */
  weights: Tensor;
}

export interface MoeRouterOptions {
  /** Renormalise the k weights to sum to 1 (Mixtral; default) or keep softmax(logits) at them. */
  normalize?: boolean;
}

/**
 * Top-k routing as Mixtral: p = softmax(logits) over the E experts, the k largest (ties to the
 * lower expert id; torch.topk on CPU does not promise an order among ties), weights p at them
 * renormalised over the k unless `normalize: false`. Backward flows to the logits through the
 * weights.
 */
export function moeRouter(logits: Tensor, k: number, opts: MoeRouterOptions = {}): MoeRouting {
  expectDType('moeRouter', 'logits', logits, 'f32');
  expectRank('moeRouter', 'logits', logits, 2);
  const [N, E] = logits.shape as [number, number];
  if (!Number.isInteger(k) || k < 1 || k > E)
    throw new PatentGPTError('E_ARGUMENT', `moeRouter: k = ${k} must be an integer in [1, E = ${E}] for logits ${logits.describe()}`);
  expectKernel('moeRouter', ['moeRouterForward', 'moeRouterBackward'], logits);
  const normalize = opts.normalize ?? true;
  const indices = Tensor.empty([N, k], { dtype: 'i32', device: logits.device });
  const weights = Tensor.empty([N, k], { device: logits.device });
  addon().moeRouterForward(indices.storage, indices.offset, weights.storage, weights.offset, logits.storage, logits.offset, N, E, k, normalize);
  record('moeRouter', weights, [logits], [indices, weights, logits], (g) => {
    const dlogits = Tensor.empty([N, E], { device: logits.device });
    addon().moeRouterBackward(dlogits.storage, dlogits.offset, g.storage, g.offset, weights.storage, weights.offset,
      indices.storage, indices.offset, logits.storage, logits.offset, N, E, k, normalize);
    return [dlogits];
  });
  return { indices, weights };
}

/**
 * Where each slot goes: the slots grouped by expert (stable, slot order within a group), and
 * each expert's row range in that order. Not differentiable; reused by every op of one layer.
 */
export interface MoePlan {
  /** Tokens N, choices per token k, experts E. */
  readonly tokens: number;
  readonly k: number;
  readonly numExperts: number;
  /** (N*k) i32: the slot at each position of the expert order. */
  readonly order: Tensor;
  /** (N*k) i32: each slot's position in the expert order (the inverse of order). */
  readonly slotPos: Tensor;
  /** (E + 1) i32: expert e's rows are offsets[e] .. offsets[e + 1]. */
  readonly offsets: Tensor;
  /** Rows per expert (the histogram), for load metrics and the balancing loss. */
  readonly tokensPerExpert: readonly number[];
  dispose(): void;
}

/** Sorts the slots of `indices` (N, k) i32, ids in [0, numExperts), by expert: histogram, cumulative sum, stable placement. */
export function moeDispatch(indices: Tensor, numExperts: number): MoePlan {
  expectDType('moeDispatch', 'indices', indices, 'i32');
  expectRank('moeDispatch', 'indices', indices, 2);
  if (!Number.isInteger(numExperts) || numExperts < 1)
    throw new PatentGPTError('E_ARGUMENT', `moeDispatch: numExperts = ${numExperts} must be a positive integer`);
  expectKernel('moeDispatch', 'moeDispatch', indices);
  const [N, k] = indices.shape as [number, number];
  const M = N * k;
  const device = indices.device;
  const order = Tensor.empty([M], { dtype: 'i32', device });
  const slotPos = Tensor.empty([M], { dtype: 'i32', device });
  const offsets = Tensor.empty([numExperts + 1], { dtype: 'i32', device });
  try {
    addon().moeDispatch(order.storage, order.offset, slotPos.storage, slotPos.offset, offsets.storage, offsets.offset,
      indices.storage, indices.offset, M, numExperts);
  } catch (err) {
    [order, slotPos, offsets].forEach((t) => t.dispose());
    throw err;
  }
  const off = Array.from(offsets.toArray() as Int32Array);
  const tokensPerExpert = Object.freeze(off.slice(1).map((end, e) => end - off[e]!));
  return {
    tokens: N, k, numExperts, order, slotPos, offsets, tokensPerExpert,
    dispose: () => [order, slotPos, offsets].forEach((t) => t.disposed || t.dispose()),
  };
}

function expectPlanDevice(op: string, plan: MoePlan, t: Tensor): void {
  if (plan.order.device !== t.device)
    throw new PatentGPTError('E_DEVICE', `${op}: the plan is on ${plan.order.device} and ${t.describe()} on ${t.device}; dispatch on the tensors' device`);
}

/** x (N, C) -> xs (N*k, C): row p is x's row order[p] / k. Backward sums each token's k rows back (the scatter-add). */
export function moePermute(x: Tensor, plan: MoePlan): Tensor {
  expectDType('moePermute', 'x', x, 'f32');
  expectShape('moePermute', 'x', x, [plan.tokens, -1]);
  expectKernel('moePermute', ['moePermuteForward', 'moePermuteBackward'], x);
  expectPlanDevice('moePermute', plan, x);
  const { tokens: N, k, order, slotPos } = plan;
  const C = x.shape[1]!;
  const xs = Tensor.empty([N * k, C], { device: x.device });
  addon().moePermuteForward(xs.storage, xs.offset, x.storage, x.offset, order.storage, order.offset, N, C, k);
  return record('moePermute', xs, [x], [slotPos], (g) => {
    const dx = Tensor.empty([N, C], { device: x.device });
    addon().moePermuteBackward(dx.storage, dx.offset, g.storage, g.offset, slotPos.storage, slotPos.offset, N, C, k);
    return [dx];
  });
}

/**
 * Grouped matmul over the experts' row groups: rows offsets[e]..offsets[e+1] of xs (N*k, in)
 * times weight[e]^T -> (N*k, out). `weight` is one (E, out, in) tensor, or a list of E (out, in)
 * tensors as Hugging Face stores each expert's nn.Linear (experts.N.w1.weight, what checkpoints,
 * LoRA and the optimizer name). Differentiable in xs and the weights; an expert with no rows
 * gets a zero gradient.
 *
 * With a list, the kernel reads each expert's own storage (nothing is stacked: an optimizer's
 * in-place update is what the next call sees) and backward writes each expert's own gradient
 * (zeros for an expert with no rows). Only the experts that received rows are read, so a decode
 * step reads only the chosen experts' weights.
 */
export function moeGroupedMatmul(xs: Tensor, weight: Tensor | readonly Tensor[], plan: MoePlan): Tensor {
  if (!(weight instanceof Tensor)) return groupedMatmulExperts(xs, weight, plan);
  expectDType('moeGroupedMatmul', 'xs', xs, 'f32');
  expectDType('moeGroupedMatmul', 'weight', weight, 'f32');
  expectRank('moeGroupedMatmul', 'weight', weight, 3);
  const [E, O, I] = weight.shape as [number, number, number];
  if (E !== plan.numExperts)
    throw new PatentGPTError('E_SHAPE', `moeGroupedMatmul: weight ${weight.describe()} holds ${E} experts but the plan routes to ${plan.numExperts}`);
  const M = plan.tokens * plan.k;
  expectShape('moeGroupedMatmul', 'xs', xs, [M, I]);
  expectKernel('moeGroupedMatmul', ['moeGroupedGemmForward', 'moeGroupedGemmBackward'], xs, weight);
  expectPlanDevice('moeGroupedMatmul', plan, xs);
  const { offsets } = plan;
  const y = Tensor.empty([M, O], { device: xs.device });
  addon().moeGroupedGemmForward(y.storage, y.offset, xs.storage, xs.offset, weight.storage, weight.offset, offsets.storage, offsets.offset, M, E, O, I);
  return record('moeGroupedMatmul', y, [xs, weight], [xs, weight, offsets], (g) => {
    const dxs = xs.requiresGrad ? Tensor.empty([M, I], { device: xs.device }) : null;
    const dw = weight.requiresGrad ? Tensor.zeros([E, O, I], { device: xs.device }) : null;
    addon().moeGroupedGemmBackward(dxs?.storage ?? null, dxs?.offset ?? 0, dw?.storage ?? null, dw?.offset ?? 0, g.storage, g.offset,
      xs.storage, xs.offset, weight.storage, weight.offset, offsets.storage, offsets.offset, M, E, O, I);
    return [dxs, dw];
  });
}

// moeGroupedMatmul with one (out, in) tensor per expert.
function groupedMatmulExperts(xs: Tensor, weights: readonly Tensor[], plan: MoePlan): Tensor {
  const op = 'moeGroupedMatmul';
  expectDType(op, 'xs', xs, 'f32');
  const E = weights.length;
  if (E !== plan.numExperts)
    throw new PatentGPTError('E_SHAPE', `${op}: ${E} expert weights given but the plan routes to ${plan.numExperts}`);
  const w0 = weights[0]!;
  expectRank(op, 'weight[0]', w0, 2);
  const [O, I] = w0.shape as [number, number];
  weights.forEach((w, e) => {
    expectDType(op, `weight[${e}]`, w, 'f32');
    expectShape(op, `weight[${e}]`, w, [O, I]);
  });
  const M = plan.tokens * plan.k;
  expectShape(op, 'xs', xs, [M, I]);
  expectKernel(op, ['moeGroupedGemmForward', 'moeGroupedGemmBackward'], xs, ...weights);
  expectPlanDevice(op, plan, xs);
  const device = xs.device;
  const y = Tensor.empty([M, O], { device });
  // The experts' own storages, read by the kernel in place (no stacked copy): an expert with no
  // rows is not read at all, so a decode step reads only the chosen experts' weights.
  const list = tensorArgs(weights);
  const { offsets } = plan;
  addon().moeExpertsGemmForward(y.storage, y.offset, xs.storage, xs.offset, list, offsets.storage, offsets.offset, M, E, O, I);
  if (!isGradEnabled() || !(xs.requiresGrad || weights.some((w) => w.requiresGrad))) return y;
  return record(op, y, [xs, ...weights], [xs, ...weights, offsets], (g) => {
    const dxs = xs.requiresGrad ? Tensor.empty([M, I], { device }) : null;
    // One gradient per expert, written by the kernel (zeros for an expert without rows): no
    // (E, out, in) buffer to zero and slice.
    const dW = weights.some((w) => w.requiresGrad) ? weights.map(() => Tensor.empty([O, I], { device })) : [];
    addon().moeExpertsGemmBackward(dxs?.storage ?? null, dxs?.offset ?? 0, tensorArgs(dW), g.storage, g.offset,
      xs.storage, xs.offset, list, offsets.storage, offsets.offset, M, E, O, I);
    return [dxs, ...weights.map((w, e) => {
      if (w.requiresGrad) return dW[e]!;
      dW[e]?.dispose();
      return null;
    })];
  });
}

/** Plain { storage, offset } records of tensors: what a native "f32[]" list argument reads. */
export function tensorArgs(ts: readonly Tensor[]): TensorArg[] {
  return ts.map((t) => ({ storage: t.storage, offset: t.offset }));
}

/** y (N*k, C) in expert order and weights (N, k) -> (N, C): out[n] = sum_j weights[n, j] * y[slotPos[n*k + j]]. Differentiable in both. */
export function moeCombine(y: Tensor, weights: Tensor, plan: MoePlan): Tensor {
  expectDType('moeCombine', 'y', y, 'f32');
  expectDType('moeCombine', 'weights', weights, 'f32');
  const { tokens: N, k, slotPos } = plan;
  expectShape('moeCombine', 'y', y, [N * k, -1]);
  expectShape('moeCombine', 'weights', weights, [N, k]);
  expectKernel('moeCombine', ['moeCombineForward', 'moeCombineBackward'], y, weights);
  expectPlanDevice('moeCombine', plan, y);
  const C = y.shape[1]!;
  const out = Tensor.empty([N, C], { device: y.device });
  addon().moeCombineForward(out.storage, out.offset, y.storage, y.offset, weights.storage, weights.offset, slotPos.storage, slotPos.offset, N, C, k);
  return record('moeCombine', out, [y, weights], [y, weights, slotPos], (g) => {
    const dy = Tensor.empty([N * k, C], { device: y.device });
    const dweights = Tensor.empty([N, k], { device: y.device });
    addon().moeCombineBackward(dy.storage, dy.offset, dweights.storage, dweights.offset, g.storage, g.offset,
      y.storage, y.offset, weights.storage, weights.offset, slotPos.storage, slotPos.offset, N, C, k);
    return [dy, dweights];
  });
}
