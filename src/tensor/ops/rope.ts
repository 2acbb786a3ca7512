// Rotary position embedding, Hugging Face LLaMA layout (rotate_half), with linear position
// interpolation (posScale) and base-frequency scaling (theta) for context extension.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectPositiveFinite, expectRank, expectShape } from '../check.js';
import { Tensor } from '../tensor.js';

export interface RopeOptions {
  /** Base of the frequencies (10000 in LLaMA-2; larger extends the context). */
  theta?: number;
  /** Positions are divided by this (linear interpolation; 1 = none). */
  posScale?: number;
}

/**
 * x (T, H, D) with D even, positions i32 (T) -> (T, H, D): each head's pair (i, i + D/2) is
 * rotated by (pos / posScale) * theta^(-2i/D), with the angle rounded to f32 as HF does.
 * Differentiable in x.
 */
export function rope(x: Tensor, positions: Tensor, opts: RopeOptions = {}): Tensor {
  const theta = opts.theta ?? 10000;
  const posScale = opts.posScale ?? 1;
  expectDType('rope', 'x', x, 'f32');
  expectDType('rope', 'positions', positions, 'i32');
  expectRank('rope', 'x', x, 3);
  const [T, H, D] = x.shape as [number, number, number];
  expectShape('rope', 'positions', positions, [T]);
  expectKernel('rope', ['ropeForward', 'ropeBackward'], x, positions);
  if (D % 2 !== 0) throw new PatentGPTError('E_SHAPE', `rope: head size must be even, x is ${x.describe()}`);
  expectPositiveFinite('rope', 'theta', theta);
  expectPositiveFinite('rope', 'posScale', posScale);
  const out = Tensor.empty(x.shape, { device: x.device });
  addon().ropeForward(out.storage, out.offset, x.storage, x.offset, positions.storage, positions.offset, T, H, D, theta, posScale);
  return record('rope', out, [x, positions], [positions], (g) => {
    const dx = Tensor.empty(x.shape, { device: x.device });
    addon().ropeBackward(dx.storage, dx.offset, g.storage, g.offset, positions.storage, positions.offset, T, H, D, theta, posScale);
    return [dx, null];
  });
}
