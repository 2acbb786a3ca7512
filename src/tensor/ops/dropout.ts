// Inverted dropout (torch.nn.functional.dropout in training): kept entries scaled by 1 / (1 - p).
// The mask comes from a counter-based generator (element i of a call is output offset + i of
// SplitMix64 seeded with `seed`, see native/cpu/dropout.cpp), so it depends on (seed, offset)
// only, never on threads, and backward regenerates it: nothing but the numbers is saved.
// `segments` places runs of x's elements at chosen stream positions instead of one after
// another: a caller that keys each row of x by its place in the global batch (src/nn/
// dropout-rows.ts) gets the row the same mask whatever batch, rank or offset it sits at.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectDType, expectKernel } from '../check.js';
import { Tensor } from '../tensor.js';

/** A run of x's elements and where it sits in the seed's stream. */
export interface DropoutSegment {
  /** First element of x (flat, row-major) in the run. */
  start: number;
  /** Elements in the run. */
  length: number;
  /** Stream position of the run's first element: element start + i reads output offset + i. */
  offset: number;
}

export interface DropoutOptions {
  /** Seeds the mask; an integer in [0, 2^53). */
  seed: number;
  /**
   * The mask's position in the seed's stream (default 0): a call reads outputs offset ..
   * offset + x.size - 1, so advancing it by x.size each call gives fresh, non-overlapping masks.
   */
  offset?: number;
  /**
   * Instead of `offset`: x's elements as runs, in order and covering x exactly, each at its own
   * stream position (runs that continue each other are drawn in one native call).
   */
  segments?: readonly DropoutSegment[];
}

/** x with each entry zeroed with probability p and the others scaled by 1 / (1 - p). Differentiable in x. */
export function dropout(x: Tensor, p: number, opts: DropoutOptions): Tensor {
  expectDType('dropout', 'x', x, 'f32');
  if (!(p >= 0 && p < 1)) throw new PatentGPTError('E_ARGUMENT', `dropout: p must be in [0, 1), got ${p}`);
  const seed = opts.seed;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new PatentGPTError('E_ARGUMENT', `dropout: seed must be an integer in [0, 2^53), got ${seed}`);
  if (opts.segments !== undefined && opts.offset !== undefined)
    throw new PatentGPTError('E_ARGUMENT', 'dropout: pass offset or segments, not both (segments carry their own offsets)');
  const runs = opts.segments !== undefined ? checkSegments(opts.segments, x.size) : [{ start: 0, length: x.size, offset: opts.offset ?? 0 }];
  for (const r of runs) {
    if (!Number.isSafeInteger(r.offset) || r.offset < 0) throw new PatentGPTError('E_ARGUMENT', `dropout: offset must be an integer in [0, 2^53), got ${r.offset}`);
    if (!Number.isSafeInteger(r.offset + r.length))
      throw new PatentGPTError('E_ARGUMENT', `dropout: offset ${r.offset} + ${r.length} elements passes 2^53; start a new seed instead`);
  }
  expectKernel('dropout', ['dropoutForward', 'dropoutBackward'], x);
  const out = Tensor.empty(x.shape, { device: x.device });
  for (const r of runs) addon().dropoutForward(out.storage, out.offset + r.start, x.storage, x.offset + r.start, r.length, p, seed, r.offset);
  return record('dropout', out, [x], [], (g) => {
    const dx = Tensor.empty(x.shape, { device: x.device });
    for (const r of runs) addon().dropoutBackward(dx.storage, dx.offset + r.start, g.storage, g.offset + r.start, r.length, p, seed, r.offset);
    return [dx];
  });
}

/** The segments in order, contiguous from 0 to `size`, the empty ones dropped and continuing ones merged. */
function checkSegments(segments: readonly DropoutSegment[], size: number): DropoutSegment[] {
  const out: DropoutSegment[] = [];
  let at = 0;
  segments.forEach((s, i) => {
    if (!Number.isSafeInteger(s.length) || s.length < 0 || s.start !== at)
      throw new PatentGPTError('E_ARGUMENT', `dropout: segment ${i} must start at element ${at} with an integer length >= 0, got start ${s.start}, length ${s.length} (segments cover x in order)`);
    at += s.length;
    if (s.length === 0) return;
    const last = out[out.length - 1];
    if (last && last.offset + last.length === s.offset) out[out.length - 1] = { ...last, length: last.length + s.length };
    else out.push({ start: s.start, length: s.length, offset: s.offset });
  });
  if (at !== size) throw new PatentGPTError('E_ARGUMENT', `dropout: the segments cover ${at} elements, x has ${size}`);
  return out;
}
