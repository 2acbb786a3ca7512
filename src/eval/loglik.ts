// Log-likelihood of continuations given contexts, with lm-evaluation-harness semantics
// (HFLM.loglikelihood / _encode_pair / _loglikelihood_tokens):
//
//  - Tokenization: trailing whitespace of the context moves to the front of the continuation,
//    then whole = encode(context + continuation), ctx = encode(context), and the continuation's
//    tokens are whole[len(ctx):] (lm-eval's "encode the pair, split at the context's length"
//    rule, not separate encodings). An empty context is replaced by one prefix token (BOS), as
//    lm-eval's prefix_token_id. Otherwise BOS goes in front of every context when `addBos` (the
//    default when the tokenizer has one): lm-eval 0.4 leaves add_bos_token to the tokenizer, and
//    LLaMA's tokenizer adds BOS (checked against lm-eval 0.4.13 in test/eval/lm-eval-parity).
//  - Score: the sum over the continuation's tokens of log softmax(logits)[token], the logits read
//    at the position before each token. Sequences longer than the model's maxSeqLen + 1 keep
//    their last maxSeqLen + 1 tokens (left truncation, as lm-eval).
//
// Batching: requests go through prefix.ts: each distinct context (after left truncation) is
// computed once and the continuations after it as a trie of single-token rows over the paged KV
// cache (tree attention), so a question's options never recompute its context. With
// `sharedContexts: false` (or a context and trie larger than the whole cache) they become token
// rows (context + continuation)[:-1]; a request whose row is a prefix of a longer request's row is read from that
// row (causal attention: same logits), so options one token after a shared context (" A", " B",
// ...) cost one row. Rows are packed into forwards of at most `maxBatchTokens` tokens (cuSeqlens:
// attention never crosses rows); only the positions that are read go through the output layer.
//
// Memory: a forward keeps every layer's activations until it ends, about
// activationBytesPerToken(config) a token, so the default step size is what fits in a quarter of
// the weights' bytes (64 to 1024 tokens); contexts are prefilled in steps of exactly that size
// (prefix.ts), so the native allocator, which keeps freed blocks by size class, hands the same
// blocks back step after step; blocks of other sizes are given back once they pass
// `cacheLimitBytes`. The KV cache takes at most half the weights' bytes.
// The weights are checked once and every log-likelihood is checked: a model that is not finite
// is refused (finite.ts) rather than scored.
import { PatentGPTError } from '../errors.js';
import { kvBytesPerToken } from '../infer/blocks.js';
import { ModelRunner } from '../infer/runner.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import { checkFiniteLoglik, checkFiniteWeights } from './finite.js';
import { scoreSharedContexts } from './prefix.js';
import { Tensor, embedding, linear, logprobs, memoryStats, noGrad, releaseCachedMemory, scope } from '../tensor/index.js';

/** What the scorer needs of a tokenizer (SentencePieceTokenizer and ByteTokenizer fit). */
export interface EvalTokenizer {
  encode(text: string, opts?: { bos?: boolean }): ArrayLike<number>;
  readonly bosId: number;
}

export interface LoglikRequest {
  context: string;
  continuation: string;
}

export interface LoglikResult {
  /** Sum of the continuation tokens' log-probabilities. */
  logprob: number;
  /** Number of continuation tokens. */
  nTokens: number;
}

export interface ScorerOptions {
  /**
   * Most tokens in one forward (default: as many as a quarter of the weights' bytes of activations
   * allow, at least 64 and at most 1024, since larger forwards measured slower per token on 2 cores). 1 row per
   * forward when `batched` is false.
   */
  maxBatchTokens?: number;
  /** Freed native blocks kept for reuse between steps beyond which they are given back (default: two steps' activations). */
  cacheLimitBytes?: number;
  /** Check that every weight is finite before scoring (default true). */
  checkWeights?: boolean;
  /** Pack many rows per forward and share rows between requests (default true). */
  batched?: boolean;
  /** Prepend BOS to every context (default: when the tokenizer has a BOS, as lm-eval's HFLM with a LLaMA tokenizer). */
  addBos?: boolean;
  /** When batched, compute each context once for all its continuations (default true; false: packed rows only). */
  sharedContexts?: boolean;
  /** KV cache of the shared-context path (default 256 MiB, and at least one full context): more contexts per step. */
  kvCacheBytes?: number;
}

export interface TokenizedRequest {
  context: Int32Array;
  continuation: Int32Array;
}

/** Bytes of activations a forward holds per token until it ends (every layer's, f32): an estimate from the shapes. */
export function activationBytesPerToken(cfg: { nLayers: number; dim: number; ffnDim: number }): number {
  // Per layer: norm, q, k, v, roped q and k, attention out, o_proj, two residual adds, norm (11 x dim);
  // gate, up, their product (3 x ffn); down (dim).
  return 4 * cfg.nLayers * (12 * cfg.dim + 3 * cfg.ffnDim);
}

/** Bytes of the model's parameters. */
function weightBytes(model: LlamaForCausalLM): number {
  return model.parameters().reduce((s, t) => s + t.byteLength, 0);
}

/** lm-eval's _encode_pair: the continuation is encode(ctx + cont) after encode(ctx)'s length. */
export function encodePair(tok: EvalTokenizer, context: string, continuation: string, addBos = false): TokenizedRequest {
  if (context === '') {
    if (tok.bosId < 0) throw new PatentGPTError('E_ARGUMENT', 'loglikelihood: an empty context needs a tokenizer with a BOS token');
    return { context: Int32Array.of(tok.bosId), continuation: Int32Array.from(tok.encode(continuation)) };
  }
  const trimmed = context.replace(/\s+$/u, '');
  const nSpaces = context.length - trimmed.length;
  if (nSpaces > 0) {
    continuation = context.slice(trimmed.length) + continuation;
    context = trimmed;
  }
  const whole = Int32Array.from(tok.encode(context + continuation, { bos: addBos }));
  const ctxLen = tok.encode(context, { bos: addBos }).length;
  return { context: whole.slice(0, ctxLen), continuation: whole.slice(ctxLen) };
}

interface Row {
  tokens: Int32Array;
  /** Reads: position in the row, target token, request index. */
  reads: { pos: number; target: number; req: number }[];
}

class TrieNode {
  children = new Map<number, TrieNode>();
  row = -1;
}

export class Scorer {
  readonly model: LlamaForCausalLM;
  readonly tokenizer: EvalTokenizer;
  readonly maxBatchTokens: number;
  readonly batched: boolean;
  readonly addBos: boolean;
  readonly sharedContexts: boolean;
  readonly kvCacheBytes: number;
  readonly cacheLimitBytes: number;
  /** KV cache of the shared-context path (blocks of one token), made on first use; close() frees it. */
  #runner: ModelRunner | null = null;
  /** Forwards run so far, and the tokens they computed (for tests and benchmarks). */
  forwards = 0;
  tokensComputed = 0;

  constructor(model: LlamaForCausalLM, tokenizer: EvalTokenizer, opts: ScorerOptions = {}) {
    this.model = model;
    this.tokenizer = tokenizer;
    const weights = weightBytes(model);
    this.maxBatchTokens = opts.maxBatchTokens ?? Math.max(64, Math.min(1024, Math.floor(weights / 4 / activationBytesPerToken(model.config))));
    this.batched = opts.batched ?? true;
    this.addBos = opts.addBos ?? tokenizer.bosId >= 0;
    this.sharedContexts = opts.sharedContexts ?? true;
    this.kvCacheBytes = opts.kvCacheBytes ?? Math.min(256 * 2 ** 20, Math.max(16 * 2 ** 20, weights / 2));
    // Room for two steps' blocks: the fixed-size steps reuse theirs; the odd sizes (a batch's
    // last step, the trie's levels) are given back when they pile up. A limit under one step
    // would free and reallocate every step, and glibc, which keeps big freed blocks of varied
    // sizes in its heap, then grew the process by gigabytes (measured: 1.1 GB vs 2-4 GB).
    this.cacheLimitBytes = opts.cacheLimitBytes ?? 2 * this.maxBatchTokens * activationBytesPerToken(model.config);
    if (!(this.maxBatchTokens >= 1)) throw new PatentGPTError('E_ARGUMENT', `maxBatchTokens must be >= 1, got ${this.maxBatchTokens}`);
    if (opts.checkWeights ?? true) checkFiniteWeights(model);
  }

  tokenize(reqs: readonly LoglikRequest[]): TokenizedRequest[] {
    return reqs.map((r) => encodePair(this.tokenizer, r.context, r.continuation, this.addBos));
  }

  /** Log-likelihood of each continuation given its context, in request order. */
  loglikelihood(reqs: readonly LoglikRequest[], onProgress?: (done: number) => void): LoglikResult[] {
    return this.loglikelihoodTokens(this.tokenize(reqs), onProgress);
  }

  loglikelihoodTokens(reqs: readonly TokenizedRequest[], onProgress?: (done: number) => void): LoglikResult[] {
    const maxLen = this.model.config.maxSeqLen;
    const out: LoglikResult[] = reqs.map((r) => ({ logprob: 0, nTokens: r.continuation.length }));
    // Rows: (ctx + cont)[-(maxLen + 1):][:-1]; the continuation's targets are the row's last tokens.
    const items = reqs.map((r, i) => {
      if (r.continuation.length === 0) return null; // nothing to score: log-likelihood 0
      if (r.continuation.length > maxLen)
        throw new PatentGPTError('E_ARGUMENT', `loglikelihood: request ${i} has a continuation of ${r.continuation.length} tokens, more than maxSeqLen ${maxLen}`);
      let all = new Int32Array(r.context.length + r.continuation.length);
      all.set(r.context, 0);
      all.set(r.continuation, r.context.length);
      if (all.length > maxLen + 1) all = all.slice(all.length - (maxLen + 1));
      return { req: i, input: all.subarray(0, all.length - 1), targets: r.continuation, first: all.length - 1 - r.continuation.length };
    });
    let live = items.filter((x): x is NonNullable<typeof x> => x !== null);
    let done = 0;
    if (this.batched && this.sharedContexts && live.length > 0) {
      // Contexts as left-truncated for their rows: input minus the continuation's tokens in it.
      const truncated: TokenizedRequest[] = reqs.map((r, i) => {
        const it = items[i];
        return it ? { context: it.input.subarray(0, it.first + 1), continuation: r.continuation } : r;
      });
      const cfg = this.model.config;
      const perToken = kvBytesPerToken({ nLayers: cfg.nLayers, nKvHeads: cfg.nKvHeads, headDim: cfg.dim / cfg.nHeads });
      // At least a whole context with room for its trie, and a full prefill step.
      const numBlocks = Math.max(Math.floor(this.kvCacheBytes / perToken), this.maxBatchTokens + maxLen + 1);
      this.#runner ??= new ModelRunner(this.model, { numBlocks, blockSize: 1 });
      const r = scoreSharedContexts(this.#runner, truncated, live.map((it) => it.req), out, this.maxBatchTokens, (n) => onProgress?.((done += n)), () => this.#trimCache());
      this.forwards += r.steps;
      this.tokensComputed += r.tokens;
      const left = new Set(r.left);
      live = live.filter((it) => left.has(it.req));
    }
    const rows: Row[] = [];
    if (this.batched) {
      // Longest rows first, so shorter requests can be read from a row that contains them.
      live.sort((a, b) => b.input.length - a.input.length || a.req - b.req);
      const root = new TrieNode();
      for (const it of live) {
        let node: TrieNode | undefined = root;
        for (let k = 0; k < it.input.length && node; k++) node = node.children.get(it.input[k]!);
        let rowIdx: number;
        if (node && node.row >= 0) rowIdx = node.row;
        else {
          rowIdx = rows.length;
          rows.push({ tokens: it.input, reads: [] });
          let n = root;
          for (let k = 0; k < it.input.length; k++) {
            let c = n.children.get(it.input[k]!);
            if (!c) n.children.set(it.input[k]!, (c = new TrieNode()));
            if (c.row < 0) c.row = rowIdx;
            n = c;
          }
        }
        for (let j = 0; j < it.targets.length; j++) rows[rowIdx]!.reads.push({ pos: it.first + j, target: it.targets[j]!, req: it.req });
      }
    } else {
      for (const it of live) {
        const reads = Array.from(it.targets, (t, j) => ({ pos: it.first + j, target: t, req: it.req }));
        rows.push({ tokens: it.input, reads });
      }
    }
    // Pack rows into forwards.
    let i = 0;
    while (i < rows.length) {
      const group: Row[] = [rows[i]!];
      let n = rows[i]!.tokens.length;
      i++;
      if (this.batched) {
        while (i < rows.length && n + rows[i]!.tokens.length <= this.maxBatchTokens) {
          n += rows[i]!.tokens.length;
          group.push(rows[i]!);
          i++;
        }
      }
      this.#runGroup(group, out);
      this.#trimCache();
      done += group.reduce((s, r) => s + new Set(r.reads.map((x) => x.req)).size, 0);
      onProgress?.(done);
    }
    checkFiniteLoglik(out);
    return out;
  }

  /** Gives the allocator's cached blocks back when they pass cacheLimitBytes. */
  #trimCache(): void {
    if (memoryStats().cpu.cachedBytes > this.cacheLimitBytes) releaseCachedMemory();
  }

  /** Frees the KV cache of the shared-context path (the scorer stays usable: it is made again on use). */
  close(): void {
    this.#runner?.close();
    this.#runner = null;
  }

  #runGroup(group: Row[], out: LoglikResult[]): void {
    const N = group.reduce((s, r) => s + r.tokens.length, 0);
    const tokens = new Int32Array(N);
    const cu = new Int32Array(group.length + 1);
    const readPos: number[] = [];
    const readTarget: number[] = [];
    const readReq: number[] = [];
    let off = 0;
    group.forEach((r, g) => {
      tokens.set(r.tokens, off);
      for (const x of r.reads) {
        readPos.push(off + x.pos);
        readTarget.push(x.target);
        readReq.push(x.req);
      }
      off += r.tokens.length;
      cu[g + 1] = off;
    });
    const lp = noGrad(() =>
      scope(() => {
        const h = this.model.hidden({ tokens, cuSeqlens: cu });
        const picked = embedding(Tensor.from(Int32Array.from(readPos), [readPos.length], { dtype: 'i32' }), h);
        const logits = linear(picked, this.model.outputWeight);
        const ids = Tensor.from(Int32Array.from(readTarget), [readTarget.length], { dtype: 'i32' });
        const res = logprobs(logits, ids);
        return res.toArray() as Float32Array;
      }),
    );
    this.forwards++;
    this.tokensComputed += N;
    for (let k = 0; k < readReq.length; k++) out[readReq[k]!]!.logprob += lp[k]!;
  }
}
