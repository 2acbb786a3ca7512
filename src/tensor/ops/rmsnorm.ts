// RMSNorm (LlamaRMSNorm): x * rsqrt(mean(x^2) + eps) * weight over the last dimension.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectRank } from '../check.js';
import { Tensor } from '../tensor.js';

/** x (..., C), weight (C) -> (..., C). Differentiable in x and weight. */
export function rmsnorm(x: Tensor, weight: Tensor, eps = 1e-5): Tensor {
  expectDType('rmsnorm', 'x', x, 'f32');
  expectDType('rmsnorm', 'weight', weight, 'f32');
  expectRank('rmsnorm', 'weight', weight, 1);
  expectKernel('rmsnorm', ['rmsnormForward', 'rmsnormBackward'], x, weight);
  const C = weight.shape[0]!;
  if (x.shape.length === 0 || x.shape[x.shape.length - 1] !== C)
    throw new PatentGPTError('E_SHAPE', `rmsnorm: x ${x.describe()} must end in the weight's size ${C} (weight ${weight.describe()})`);
  if (C === 0) throw new PatentGPTError('E_SHAPE', `rmsnorm: cannot normalise rows of size 0 (x ${x.describe()})`);
  if (!Number.isFinite(eps) || eps < 0) throw new PatentGPTError('E_ARGUMENT', `rmsnorm: eps must be a finite number >= 0, got ${eps}`);
  const N = x.size / C;
  const out = Tensor.empty(x.shape, { device: x.device });
  const rstd = Tensor.empty([N], { device: x.device }); // (N) saved for backward
  addon().rmsnormForward(out.storage, out.offset, rstd.storage, rstd.offset, x.storage, x.offset, weight.storage, weight.offset, N, C, eps);
  const result = record('rmsnorm', out, [x, weight], [x, weight, rstd], (g) => {
    const dx = Tensor.empty(x.shape, { device: x.device });
    const dw = Tensor.zeros([C], { device: x.device });
    addon().rmsnormBackward(dx.storage, dx.offset, dw.storage, dw.offset, g.storage, g.offset, x.storage, x.offset,
      weight.storage, weight.offset, rstd.storage, rstd.offset, N, C);
    return [dx, dw];
  });
  rstd.dispose(); // the tape holds its own reference when it recorded
  return result;
}
