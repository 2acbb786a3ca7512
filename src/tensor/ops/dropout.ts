// Inverted dropout (torch.nn.functional.dropout in training): kept entries scaled by 1 / (1 - p).
// The mask comes from a counter-based generator (element i of a call is output offset + i of
// SplitMix64 seeded with `seed`, see native/cpu/dropout.cpp), so it depends on (seed, offset)
// only, never on threads, and backward regenerates it: nothing but the two numbers is saved.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectDType, expectKernel } from '../check.js';
import { Tensor } from '../tensor.js';

export interface DropoutOptions {
  /** Seeds the mask; an integer in [0, 2^53). */
  seed: number;
  /**
   * The mask's position in the seed's stream (default 0): a call reads outputs offset ..
   * offset + x.size - 1, so advancing it by x.size each call gives fresh, non-overlapping masks.
   */
  offset?: number;
}

/** x with each entry zeroed with probability p and the others scaled by 1 / (1 - p). Differentiable in x. */
export function dropout(x: Tensor, p: number, opts: DropoutOptions): Tensor {
  expectDType('dropout', 'x', x, 'f32');
  if (!(p >= 0 && p < 1)) throw new PatentGPTError('E_ARGUMENT', `dropout: p must be in [0, 1), got ${p}`);
  const seed = opts.seed, offset = opts.offset ?? 0;
  for (const [name, v] of [['seed', seed], ['offset', offset]] as const)
    if (!Number.isSafeInteger(v) || v < 0) throw new PatentGPTError('E_ARGUMENT', `dropout: ${name} must be an integer in [0, 2^53), got ${v}`);
  if (!Number.isSafeInteger(offset + x.size))
    throw new PatentGPTError('E_ARGUMENT', `dropout: offset ${offset} + ${x.size} elements passes 2^53; start a new seed instead`);
  expectKernel('dropout', ['dropoutForward', 'dropoutBackward'], x);
  const out = Tensor.empty(x.shape, { device: x.device });
  addon().dropoutForward(out.storage, out.offset, x.storage, x.offset, x.size, p, seed, offset);
  return record('dropout', out, [x], [], (g) => {
    const dx = Tensor.empty(x.shape, { device: x.device });
    addon().dropoutBackward(dx.storage, dx.offset, g.storage, g.offset, x.size, p, seed, offset);
    return [dx];
  });
}
