// Refusing a model whose numbers are not finite. A NaN log-likelihood compares false with
// everything, so an argmax over NaNs keeps its first candidate: a diverged or corrupt model
// would "score" by always answering A (27.5% on a four-choice exam) instead of failing.
import { PatentGPTError } from '../errors.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { noGrad, scope, type Tensor } from '../tensor/index.js';
import type { LoglikResult } from './loglik.js';

/** Throws E_NONFINITE naming the first parameter that holds NaN or infinite values. */
export function checkFiniteWeights(model: LlamaForCausalLM): void {
  for (const [name, t] of model.namedParameters()) {
    if (t.dtype !== 'f32' && t.dtype !== 'bf16' && t.dtype !== 'f16') continue; // integer buffers cannot hold NaN
    const bad = countNonFinite(t);
    if (bad.count > 0)
      throw new PatentGPTError('E_NONFINITE',
        `the model's weight "${name}" holds ${bad.count} non-finite value${bad.count === 1 ? '' : 's'} (first ${bad.value} at index ${bad.index}): ` +
        'the model has diverged or its folder is corrupt, so no score would mean anything; evaluate an earlier checkpoint');
  }
}

/** Non-finite values of t, read a few MiB at a time (a whole copy of a large embedding would be garbage as big as the table). */
function countNonFinite(t: Tensor): { count: number; index: number; value: number } {
  const rows = t.shape.length === 0 ? 1 : t.shape[0]!;
  const rowSize = rows === 0 ? 0 : t.size / rows;
  const step = Math.max(1, Math.floor(2 ** 20 / Math.max(1, rowSize)));
  let count = 0;
  let index = -1;
  let value = 0;
  for (let r0 = 0; r0 < rows; r0 += step) {
    const w = noGrad(() => scope(() => (t.shape.length === 0 ? t : t.narrow(r0, Math.min(step, rows - r0))).toArray())) as Float32Array;
    for (let i = 0; i < w.length; i++)
      if (!Number.isFinite(w[i]!)) {
        if (index < 0) [index, value] = [r0 * rowSize + i, w[i]!];
        count++;
      }
  }
  return { count, index, value };
}

/** Throws E_NONFINITE when a log-likelihood is NaN or infinite (finite weights whose activations overflow). */
export function checkFiniteLoglik(out: readonly LoglikResult[]): void {
  const bad = out.findIndex((r) => !Number.isFinite(r.logprob));
  if (bad >= 0)
    throw new PatentGPTError('E_NONFINITE',
      `the log-likelihood of request ${bad} is ${out[bad]!.logprob} (${out.filter((r) => !Number.isFinite(r.logprob)).length} of ${out.length} are not finite): ` +
      'the model\'s activations overflow, so its scores would be meaningless; check the checkpoint (weights too large, a diverged run)');
}
