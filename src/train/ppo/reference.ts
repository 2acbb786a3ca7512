// The reference model's log-probs of a rollout's responses (PPO's KL penalty), scored by an
// inference Engine over the frozen reference: Engine.score prefills prompt ++ response through the
// paged KV cache and reads the logits of the response rows. Same model, same tokens, same math as
// the packed forward it replaces (log-softmax of logits / (temperature + 1e-7)); the paged
// attention rounds differently (~1e-6), as the rollout engine's does.
//
// The reference never changes, so the keys and values of the prompts are computed once for the
// run: at the start, the engine pins (Engine.pinPrefix) the full blocks of each prompt, in the
// prompt file's order, while the cache (kvCacheBytes) keeps room for a whole rollout; the chat
// template shared by every prompt is one set of blocks. A rollout then computes per response only
// its prompt's last partial block and the response. The scoring requests add nothing to the cache
// (cache: false), so every hit is a pinned block computed the same way in every run: a rollout's
// reference log-probs depend on its own sequences only, and a resumed run repeats an uninterrupted
// one bit for bit. Prompts that do not fit are scored whole (their template blocks still pinned).
import { Engine } from '../../infer/engine.js';
import type { LlamaForCausalLM } from '../../models/llama.js';

export interface ReferenceScorerOptions {
  /** Sampling temperature: the log-probs are of logits / (temperature + 1e-7). */
  temperature: number;
  /** Bytes of the reference engine's KV cache: the pinned prompts and a rollout's working set. */
  kvCacheBytes: number;
  /** Sequences a rollout scores (the working set kept free of pins holds them all at once). */
  rolloutBatch: number;
  /** Most response tokens. */
  maxNewTokens: number;
  /** Longest prompt + response. */
  seqLen: number;
  /** Most tokens in one step. */
  maxNumBatchedTokens: number;
  /** Engine's batchInvariant (ppo.batchInvariant). */
  batchInvariant?: boolean;
}

export class ReferenceScorer {
  readonly #engine: Engine;
  readonly #temperature: number;
  /** Prompts whose full blocks are pinned, and the tokens pinned (for the log). */
  pinnedPrompts = 0;
  pinnedTokens = 0;

  private constructor(engine: Engine, temperature: number) {
    this.#engine = engine;
    this.#temperature = temperature;
  }

  /** An engine over the frozen reference with the prompts' full blocks pinned (in order, while they fit). */
  static async create(reference: LlamaForCausalLM, prompts: readonly Int32Array[], opts: ReferenceScorerOptions): Promise<ReferenceScorer> {
    const engine = new Engine(reference, {
      kvCacheBytes: opts.kvCacheBytes, maxNumSeqs: opts.rolloutBatch, maxNumBatchedTokens: opts.maxNumBatchedTokens, enablePrefixCaching: true, eosTokenId: null, batchInvariant: opts.batchInvariant ?? false,
    });
    const scorer = new ReferenceScorer(engine, opts.temperature);
    try {
      const bs = engine.pool.blockSize;
      // room left unpinned: a whole rollout at once (a partial prompt block + the response each), and at least one unpinned sequence
      const reserve = Math.max(engine.pool.blocksFor(opts.seqLen), opts.rolloutBatch * engine.pool.blocksFor(bs - 1 + opts.maxNewTokens));
      for (const p of prompts) {
        // the blocks a score of this prompt can hit: those before its last token (whose row predicts the response)
        const prefix = p.subarray(0, p.length - 1);
        const before = engine.stats().blocks.used;
        if (engine.stats().blocks.free - engine.pool.blocksFor(Math.floor(prefix.length / bs) * bs) < reserve) continue; // an upper bound: shared blocks cost nothing
        const n = await engine.pinPrefix(prefix);
        if (n > 0) {
          scorer.pinnedPrompts++;
          scorer.pinnedTokens += (engine.stats().blocks.used - before) * bs;
        }
      }
    } catch (err) {
      engine.close();
      throw err;
    }
    return scorer;
  }

  /** The reference's log-probs of each response after its prompt, concatenated in the order of seqs. */
  async logprobs(seqs: readonly { prompt: Int32Array; response: Int32Array }[]): Promise<Float32Array> {
    const parts = await Promise.all(seqs.map((s) => this.#engine.score(s.prompt, s.response, { temperature: this.#temperature, cache: false })));
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  close(): void {
    this.#engine.close();
  }
}
