// The reference model's log-probs of a rollout's responses (PPO's KL penalty), scored by an
// inference Engine over the frozen reference: Engine.score prefills prompt ++ response through the
// paged KV cache with prefix caching on (valid because the reference's weights never change), so
// the chat template's blocks, shared by every prompt, are computed once per rollout instead of
// once per response. Same model, same tokens, same math as the packed forward it replaces
// (log-softmax of logits / (temperature + 1e-7)); the paged attention rounds differently (~1e-6).
//
// The cache lives for one rollout only: a cached block holds keys and values computed in another
// step's batch, which round differently from a fresh prefill, so a cache carried across rollouts
// would make a rollout's reference log-probs depend on the rollouts before it, and a resumed run
// (whose cache starts empty) would no longer repeat an uninterrupted one bit for bit.
import { Engine } from '../../infer/engine.js';
import type { LlamaForCausalLM } from '../../models/llama.js';

export interface ReferenceScoring {
  /** Sampling temperature: the log-probs are of logits / (temperature + 1e-7). */
  temperature: number;
  /** Bytes of the reference engine's KV cache (bounds its memory; fewer blocks only serialize the rollout). */
  kvCacheBytes: number;
  /** Most sequences in one step. */
  maxNumSeqs: number;
  /** Most tokens in one step. */
  maxNumBatchedTokens: number;
}

/** The reference's log-probs of each response after its prompt, concatenated in the order of seqs. */
export async function referenceLogprobs(reference: LlamaForCausalLM, seqs: readonly { prompt: Int32Array; response: Int32Array }[], opts: ReferenceScoring): Promise<Float32Array> {
  const engine = new Engine(reference, {
    kvCacheBytes: opts.kvCacheBytes, maxNumSeqs: opts.maxNumSeqs, maxNumBatchedTokens: opts.maxNumBatchedTokens, enablePrefixCaching: true, eosTokenId: null,
  });
  try {
    const parts = await Promise.all(seqs.map((s) => engine.score(s.prompt, s.response, { temperature: opts.temperature })));
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  } finally {
    engine.close();
  }
}
