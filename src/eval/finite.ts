// Refusing a model whose numbers are not finite. A NaN log-likelihood compares false with
// everything, so an argmax over NaNs keeps its first candidate: a diverged or corrupt model
// would "score" by always answering A (27.5% on a four-choice exam) instead of failing.
import { PatentGPTError } from '../errors.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import type { LoglikResult } from './loglik.js';

/** Throws E_CHECKPOINT naming the first parameter that holds NaN or infinite values. */
export function checkFiniteWeights(model: LlamaForCausalLM): void {
  for (const [name, t] of model.namedParameters()) {
    const w = t.toArray();
    if (!(w instanceof Float32Array)) continue; // integer buffers cannot hold NaN
    let bad = 0;
    let first = -1;
    for (let i = 0; i < w.length; i++)
      if (!Number.isFinite(w[i]!)) {
        if (first < 0) first = i;
        bad++;
      }
    if (bad > 0)
      throw new PatentGPTError('E_CHECKPOINT',
        `the model's weight "${name}" holds ${bad} non-finite value${bad === 1 ? '' : 's'} (first ${w[first]} at index ${first}): ` +
        'the model has diverged or its folder is corrupt, so no score would mean anything; evaluate an earlier checkpoint');
  }
}

/** Throws E_CHECKPOINT when a log-likelihood is NaN or infinite (finite weights whose activations overflow). */
export function checkFiniteLoglik(out: readonly LoglikResult[]): void {
  const bad = out.findIndex((r) => !Number.isFinite(r.logprob));
  if (bad >= 0)
    throw new PatentGPTError('E_CHECKPOINT',
      `the log-likelihood of request ${bad} is ${out[bad]!.logprob} (${out.filter((r) => !Number.isFinite(r.logprob)).length} of ${out.length} are not finite): ` +
      'the model\'s activations overflow, so its scores would be meaningless; check the checkpoint (weights too large, a diverged run)');
}
