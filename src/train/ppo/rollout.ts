// PPO's host-side bookkeeping: which prompts each rollout takes, the seed of each sampled
// response, the order of the minibatches over the epochs of a rollout, the packed layout of
// (prompt, response) rows for the policy's forward, and the rollout buffer as JSON for the
// checkpoint. Each is a pure function of (seed, rollout index, ...), so a resumed run draws the
// same prompts, samples the same responses and walks the same minibatches as an uninterrupted one.
import { PatentGPTError } from '../../errors.js';
import { blocksForBudget, kvBytesPerToken } from '../../infer/blocks.js';
import type { ModelConfig } from '../../models/config.js';
import { permutation } from '../../util/rng.js';

/** One scored, advantaged response of a rollout: everything its minibatch loss needs. */
export interface RolloutRow {
  prompt: Int32Array;
  /** The response's valid tokens (through its EOS when it has one). */
  response: Int32Array;
  /** Per response token: log-prob and value at rollout time, whitened advantage, return. */
  oldLogprobs: Float32Array;
  oldValues: Float32Array;
  advantages: Float32Array;
  returns: Float32Array;
}

/** What a rollout reports (means over its responses). */
export interface RolloutStats {
  /** Score of the reward (after the missing-EOS penalty), mean and std over responses. */
  reward: number;
  rewardStd: number;
  /** Summed per-token KL to the reference per response, mean over responses. */
  kl: number;
  /** The KL coefficient the rollout was rewarded with. */
  klCoef: number;
  /** score - klCoef * KL: what PPO maximises (TRL's objective/rlhf_reward). */
  rlhfReward: number;
  responseLength: number;
  /** Share of responses that ended with EOS. */
  eosRate: number;
  /** Generated tokens per second of the engine for this rollout. */
  rolloutTokensPerSec: number;
}

export interface Rollout {
  index: number;
  rows: RolloutRow[];
  stats: RolloutStats;
}

/** Prompt indices of rollout `r`: global draws [r B, (r + 1) B) over epochs of a seeded permutation of the prompts. */
export function rolloutPrompts(r: number, rolloutBatch: number, prompts: number, seed: number): number[] {
  if (prompts < 1) throw new PatentGPTError('E_ARGUMENT', 'rolloutPrompts: no prompts');
  const out: number[] = [];
  let epoch = -1;
  let order: Uint32Array = new Uint32Array(0);
  for (let g = r * rolloutBatch; g < (r + 1) * rolloutBatch; g++) {
    if (Math.floor(g / prompts) !== epoch) {
      epoch = Math.floor(g / prompts);
      order = permutation(prompts, seed, 'ppo-prompts', epoch);
    }
    out.push(order[g % prompts]!);
  }
  return out;
}

/** The sampling seed of response i of rollout r (a 32-bit integer). */
export function responseSeed(seed: number, r: number, i: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const x of [r, i]) {
    h = Math.imul(h ^ (x >>> 0), 0x85ebca6b) >>> 0;
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

/**
 * Whether the rollout engine's KV cache (blocks of `blockSize` tokens) holds a whole rollout
 * at once: rolloutBatch sequences of the longest prompt plus maxNewTokens. When it does not, the
 * later responses wait for blocks or are preempted and recomputed: slower, never different.
 */
export function rolloutCacheFit(cfg: ModelConfig, promptLengths: readonly number[], rolloutBatch: number, maxNewTokens: number, kvCacheMiB: number, blockSize = 16): { short: boolean; holds: number; needs: number; suggestMiB: number } {
  const perToken = kvBytesPerToken({ nLayers: cfg.nLayers, nKvHeads: cfg.nKvHeads, headDim: cfg.dim / cfg.nHeads });
  const holds = blocksForBudget(kvCacheMiB * 2 ** 20, blockSize, perToken) * blockSize;
  const longest = promptLengths.reduce((a, b) => Math.max(a, b), 0) + maxNewTokens;
  const needs = rolloutBatch * Math.ceil(longest / blockSize) * blockSize;
  return { short: holds < needs, holds, needs, suggestMiB: Math.ceil((needs * perToken) / 2 ** 20) };
}

/** Micro-batches of one rollout: epochs x rows / batchSize. */
export function microBatchesPerRollout(rows: number, batchSize: number, epochs: number): number {
  return epochs * Math.ceil(rows / batchSize);
}

/** Rows of micro-batch k of rollout r: each epoch a fresh permutation of the rows, cut in batchSize pieces. */
export function microBatchRows(r: number, k: number, o: { rows: number; batchSize: number; epochs: number; seed: number }): number[] {
  const per = Math.ceil(o.rows / o.batchSize);
  const epoch = Math.floor(k / per);
  if (epoch >= o.epochs) throw new PatentGPTError('E_INTERNAL', `microBatchRows: micro-batch ${k} is past the ${o.epochs} epochs of the rollout`);
  const order = permutation(o.rows, o.seed, 'ppo-minibatch', r, epoch);
  const at = (k % per) * o.batchSize;
  return Array.from(order.subarray(at, Math.min(o.rows, at + o.batchSize)));
}

/** Packed (prompt ++ response) sequences and, per response token, its logit row and id. */
export interface PackedRollout {
  tokens: Int32Array;
  cuSeqlens: Int32Array;
  /** Row whose next-token logits score response token t (prompt length - 1 + t), in row order. */
  rows: Int32Array;
  ids: Int32Array;
}

export function packRollout(seqs: readonly { prompt: ArrayLike<number>; response: ArrayLike<number> }[]): PackedRollout {
  let N = 0, n = 0;
  for (const s of seqs) {
    N += s.prompt.length + s.response.length;
    n += s.response.length;
  }
  const tokens = new Int32Array(N), cuSeqlens = new Int32Array(seqs.length + 1), rows = new Int32Array(n), ids = new Int32Array(n);
  let o = 0, k = 0;
  seqs.forEach((s, j) => {
    const P = s.prompt.length;
    for (let i = 0; i < P; i++) tokens[o + i] = s.prompt[i]!;
    for (let t = 0; t < s.response.length; t++) {
      tokens[o + P + t] = s.response[t]!;
      rows[k] = o + P - 1 + t;
      ids[k++] = s.response[t]!;
    }
    o += P + s.response.length;
    cuSeqlens[j + 1] = o;
  });
  return { tokens, cuSeqlens, rows, ids };
}

/** A rollout as JSON for the checkpoint (float32 values round-trip exactly through JSON numbers). */
export function rolloutToJson(r: Rollout): unknown {
  const a = (x: ArrayLike<number>): number[] => Array.from(x);
  return {
    index: r.index, stats: r.stats,
    rows: r.rows.map((w) => ({ prompt: a(w.prompt), response: a(w.response), oldLogprobs: a(w.oldLogprobs), oldValues: a(w.oldValues), advantages: a(w.advantages), returns: a(w.returns) })),
  };
}

export function rolloutFromJson(j: unknown): Rollout {
  const o = j as { index: number; stats: RolloutStats; rows: Record<string, number[]>[] };
  if (typeof o?.index !== 'number' || !Array.isArray(o.rows)) throw new PatentGPTError('E_CHECKPOINT', 'the checkpoint\'s PPO rollout buffer is malformed');
  return {
    index: o.index, stats: o.stats,
    rows: o.rows.map((w) => ({
      prompt: Int32Array.from(w.prompt!), response: Int32Array.from(w.response!), oldLogprobs: Float32Array.from(w.oldLogprobs!),
      oldValues: Float32Array.from(w.oldValues!), advantages: Float32Array.from(w.advantages!), returns: Float32Array.from(w.returns!),
    })),
  };
}
