// Optimizer kernels over tensors: the fused AdamW step and global gradient-norm clipping.
// These update in place and are never recorded on the tape.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { expectKernel, expectDType, expectSameShape } from '../check.js';
import type { Tensor } from '../tensor.js';

export interface AdamwHyper {
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay; default 0.01 (torch.optim.AdamW's default). */
  weightDecay?: number;
  /** 1-based step count, for bias correction. */
  step: number;
  /** The gradient is multiplied by this first (clipping or loss scaling); default 1. */
  gradScale?: number;
}

/**
 * One torch.optim.AdamW step on one parameter, in place: param, m (exp_avg) and v
 * (exp_avg_sq) are updated; grad is read. All four are f32 of the same shape.
 */
export function adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hp: AdamwHyper): void {
  const names = ['param', 'grad', 'm', 'v'];
  [param, grad, m, v].forEach((t, i) => expectDType('adamwStep', names[i]!, t, 'f32'));
  expectSameShape('adamwStep', param, grad, ['param', 'grad']);
  expectSameShape('adamwStep', param, m, ['param', 'm']);
  expectSameShape('adamwStep', param, v, ['param', 'v']);
  expectKernel('adamwStep', 'adamwStep', param, grad, m, v);
  if (!Number.isSafeInteger(hp.step) || hp.step < 1)
    throw new PatentGPTError('E_ARGUMENT', `adamwStep: step must be an integer >= 1, got ${hp.step}`);
  addon().adamwStep(param.storage, param.offset, m.storage, m.offset, v.storage, v.offset, grad.storage, grad.offset,
    param.size, hp.lr, hp.beta1 ?? 0.9, hp.beta2 ?? 0.999, hp.eps ?? 1e-8, hp.weightDecay ?? 0.01, hp.step, hp.gradScale ?? 1);
}

/** sqrt of the sum of squares of every element of every tensor (f32), accumulated in f64. */
export function globalGradNorm(tensors: readonly Tensor[]): number {
  let total = 0;
  for (const t of tensors) {
    expectDType('globalGradNorm', 'gradient', t, 'f32');
    expectKernel('globalGradNorm', ['sumSquares', 'scale'], t);
    total += addon().sumSquares(t.storage, t.offset, t.size);
  }
  return Math.sqrt(total);
}

/**
 * torch.nn.utils.clip_grad_norm_: when the global norm exceeds maxNorm, every tensor is scaled
 * in place by maxNorm / (norm + 1e-6). Returns the norm before clipping and the scale applied
 * (1 when none).
 */
export function clipGradNorm(tensors: readonly Tensor[], maxNorm: number): { norm: number; scale: number } {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm))
    throw new PatentGPTError('E_ARGUMENT', `clipGradNorm: maxNorm must be a positive finite number, got ${maxNorm}`);
  const norm = globalGradNorm(tensors);
  const scale = Math.min(1, Math.fround(maxNorm / (norm + 1e-6)));
  if (scale < 1 || Number.isNaN(scale)) for (const t of tensors) addon().scale(t.storage, t.offset, scale, t.size);
  return { norm, scale };
}
