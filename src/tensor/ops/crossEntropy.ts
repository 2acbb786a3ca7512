// Softmax cross-entropy (the language-model loss) and log-prob gather (RLHF, evaluation by
// log-likelihood), both over rows of logits with a numerically stable log-sum-exp.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType } from '../check.js';
import { Tensor } from '../tensor.js';
import { scale, sum } from './elementwise.js';

export interface CrossEntropyOptions {
  /** Targets equal to this add no loss and no gradient (torch's default -100). */
  ignoreIndex?: number;
  /** 'mean' over the targets that are not ignored (as torch), 'sum', or 'none' (per target). */
  reduction?: 'mean' | 'sum' | 'none';
}

// logits (..., V) with integer indices of shape (...) or flattened (N): returns [N, V].
function rows(op: string, logits: Tensor, index: Tensor, indexName: string): [number, number] {
  expectDType(op, 'logits', logits, 'f32');
  expectDType(op, indexName, index, 'i32');
  expectKernel(op, ['crossEntropyForward', 'crossEntropyBackward', 'logprobForward', 'logprobBackward'], logits, index);
  const lead = logits.shape.slice(0, -1);
  const rowCount = lead.reduce((a, b) => a * b, 1);
  const same = lead.length === index.shape.length && lead.every((d, i) => d === index.shape[i]);
  const ok = logits.shape.length >= 1 && (same || (index.shape.length === 1 && index.size === rowCount));
  if (!ok)
    throw new PatentGPTError('E_SHAPE', `${op}: logits ${logits.describe()} need ${indexName} of shape [${lead.join(', ')}], got ${index.describe()}`);
  const V = logits.shape[logits.shape.length - 1]!;
  return [index.size, V];
}

// Runs a forward kernel that may reject indices, disposing the fresh outputs if it does.
function run(outputs: Tensor[], kernel: () => void): void {
  try {
    kernel();
  } catch (err) {
    for (const t of outputs) t.dispose();
    throw err;
  }
}

/**
 * Cross-entropy of logits (..., V) against i32 targets (...) (or flattened to one dimension),
 * like F.cross_entropy; 'none' returns the targets' shape. 'mean' of
 * nothing (every target ignored) is NaN, as in torch. Differentiable in logits.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const ignoreIndex = opts.ignoreIndex ?? -100;
  const reduction = opts.reduction ?? 'mean';
  if (!Number.isInteger(ignoreIndex) || ignoreIndex < -2147483648 || ignoreIndex > 2147483647)
    throw new PatentGPTError('E_ARGUMENT', `crossEntropy: ignoreIndex must be an int32, got ${ignoreIndex}`);
  if (reduction !== 'mean' && reduction !== 'sum' && reduction !== 'none')
    throw new PatentGPTError('E_ARGUMENT', `crossEntropy: reduction must be 'mean', 'sum' or 'none', got '${String(reduction)}'`);
  const [N, V] = rows('crossEntropy', logits, targets, 'targets');
  const loss = Tensor.empty(targets.shape, { device: logits.device }); // (...) = (N)
  const lse = Tensor.empty([N], { device: logits.device }); // (N) saved for backward
  run([loss, lse], () =>
    addon().crossEntropyForward(loss.storage, loss.offset, lse.storage, lse.offset, logits.storage, logits.offset,
      targets.storage, targets.offset, N, V, ignoreIndex));
  const perTarget = record('crossEntropy', loss, [logits, targets], [logits, targets, lse], (g) => {
    const dlogits = Tensor.empty(logits.shape, { device: logits.device });
    addon().crossEntropyBackward(dlogits.storage, dlogits.offset, g.storage, g.offset, logits.storage, logits.offset,
      lse.storage, lse.offset, targets.storage, targets.offset, N, V, ignoreIndex);
    return [dlogits, null];
  });
  lse.dispose(); // the tape holds its own reference when it recorded
  if (reduction === 'none') return perTarget;
  const total = sum(perTarget);
  perTarget.dispose();
  if (reduction === 'sum') return total;
  let count = 0;
  const t = targets.toArray() as Int32Array;
  for (let i = 0; i < t.length; i++) if (t[i] !== ignoreIndex) count++;
  const mean = scale(total, 1 / count); // 0/0 = NaN when every target is ignored, as torch
  total.dispose();
  return mean;
}

/**
 * log softmax(logits)[ids]: logits (..., V), ids i32 (...) or flattened -> ids' shape. Differentiable in logits.
 */
export function logprobs(logits: Tensor, ids: Tensor): Tensor {
  const [N, V] = rows('logprobs', logits, ids, 'ids');
  const out = Tensor.empty(ids.shape, { device: logits.device }); // (...) = (N)
  const lse = Tensor.empty([N], { device: logits.device }); // (N) saved for backward
  run([out, lse], () =>
    addon().logprobForward(out.storage, out.offset, lse.storage, lse.offset, logits.storage, logits.offset,
      ids.storage, ids.offset, N, V));
  const result = record('logprobs', out, [logits, ids], [logits, ids, lse], (g) => {
    const dlogits = Tensor.empty(logits.shape, { device: logits.device });
    addon().logprobBackward(dlogits.storage, dlogits.offset, g.storage, g.offset, logits.storage, logits.offset,
      lse.storage, lse.offset, ids.storage, ids.offset, N, V);
    return [dlogits, null];
  });
  lse.dispose();
  return result;
}
