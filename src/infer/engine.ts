// The inference engine: continuous batching over a paged KV cache (vLLM's design, on our kernels).
//
//   generate(prompt, options) -> async iterator of deltas
//        │ validated here: an invalid request fails alone, before it is queued
//        ▼
//   waiting (FCFS) ──schedule──► running ──step──► sample ──► deltas / finish (blocks freed)
//        ▲                          │
//        └──── preempted (recompute: blocks freed, tokens kept) when blocks run out
//
// Each step: running sequences first (a decode token each, or the next chunk of their prompt),
// then waiting ones in arrival order while the step's token budget, maxNumSeqs and free blocks
// allow. A prompt is never cut where the step's budget happens to run out: one that fits the
// budget (maxNumBatchedTokens) is computed in one piece, and if it does not fit in what is left of
// this step it waits for the next (as vLLM without chunked prefill); only a prompt longer than the
// whole budget is prefilled in chunks across steps, of exactly the budget from where its
// computation starts. So a sequence's chunks do not depend on which other requests share its steps
// (its bits still depend on a step's size where the kernels do: matmuls of at most GEMV_MAX_ROWS
// rows take the GEMV path, which rounds differently from GEMM; batchInvariant pads every step past
// it, and then nothing does). A chunk, or the queue's head, that
// found no room in a step goes first in the next, so neither starves behind decodes. When a running
// sequence needs a block and none is free, the latest-arrived running sequence is preempted.
// Text deltas come from one incremental detokenizer per request (tokenizer/detokenize.ts): they
// concatenate to decode(prompt + output) minus decode(prompt), at O(1) cost per token.
//
// Threading: Engine runs its steps on the thread that made it, one at a time, and yields to the
// event loop (setImmediate) between steps; the token budget bounds one step's work. For a
// process that also serves HTTP, ThreadedEngine (threaded.ts) runs this same Engine in a worker
// thread, so no step ever runs on the caller's thread: the weights live in the worker (native
// storages belong to one thread's isolate), loaded there or copied over once.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { PatentGPTError } from '../errors.js';
import type { LlamaForCausalLM } from '../models/llama.js';
import type { ModelConfig } from '../models/config.js';
import { loadLora } from '../models/peft.js';
import { loadPretrained } from '../models/pretrained.js';
import { incrementalDecoder, type IncrementalDecoder } from '../tokenizer/detokenize.js';
import { BlockPool, blocksForBudget, kvBytesPerToken, type BlockTable } from './blocks.js';
import { ModelRunner, type StepItem } from './runner.js';
import { KV_CACHE_DTYPES, bytesPerElement, type Device, type KvCacheDType } from '../tensor/index.js';
import { deviceUnavailableReason } from '../native/devices.js';
import { CudaStream } from '../native/cuda-stream.js';
import { Sampler, logprobsOf, type SamplingOptions, type TokenLogprob } from './sampler.js';
import { loadFolderTokenizer } from './folder-tokenizer.js';
import { isQuantizedFolder, loadQuantized } from './quantized.js';

/** What the engine needs of a tokenizer (SentencePieceTokenizer and ByteTokenizer fit). */
export interface EngineTokenizer {
  encode(text: string, opts?: { bos?: boolean }): ArrayLike<number>;
  decode(ids: ArrayLike<number>): string;
  /**
   * An exact decoder of a stream of ids, O(1) per id (both tokenizers of this package have one).
   * Without it, text deltas come from a window of a few ids over decode(), as vLLM's.
   */
  decoder?(): IncrementalDecoder;
  readonly eosId: number;
}

export interface EngineOptions {
  /** Bytes for the K and V caches of all layers (default 256 MiB); sets the number of blocks. */
  kvCacheBytes?: number;
  /**
   * Element type of the KV cache (default 'f32'). 'bf16' and 'f16' take half the bytes per token,
   * so the same kvCacheBytes holds twice the tokens and long-context decoding reads half as much;
   * keys and values are rounded when stored (bf16: 8 bits of mantissa, f16: 11 and a range of
   * +-65504) and attention computes in f32.
   */
  kvCacheDType?: KvCacheDType;
  /** Tokens per block (default 16). */
  blockSize?: number;
  /** Most sequences in one step (default 64). */
  maxNumSeqs?: number;
  /** Most tokens computed in one step, prefill chunks included (default 512). */
  maxNumBatchedTokens?: number;
  /** Reuse cached blocks of identical prompt prefixes (default true). */
  enablePrefixCaching?: boolean;
  /** Needed for text prompts, text deltas and stop strings. */
  tokenizer?: EngineTokenizer;
  /** End-of-sequence token (default: the tokenizer's, else none). */
  eosTokenId?: number | null;
  /** Add BOS when encoding text prompts (default true). */
  addBos?: boolean;
  /** Tokens per attention partition for long contexts (default 512). */
  partitionSize?: number;
  /**
   * Longest sequence (prompt + output) served. Default: the config's maxSeqLen, times the factor
   * of dynamic-base RoPE scaling (which keeps maxSeqLen at the trained length).
   */
  maxModelLen?: number;
  /**
   * A LoRA adapter folder (PEFT's format) that fromPretrained attaches to the model, unmerged:
   * the adapted layers run the base weight plus the low-rank term through the separate ops (the
   * fused decode path takes plain weights only, so those steps fall back to the generic forward).
   * For a model passed to the constructor, attach it first with loadLora(model, dir).
   */
  adapter?: string;
  /**
   * Where fromPretrained puts the weights and the engine its caches (default 'cpu'). A model
   * passed to the constructor runs where it is (move it with model.to() first); naming another
   * device here is then an error.
   */
  device?: Device;
  /**
   * Hand each request's onToken the final-normed hidden row (C) its token's logits came from
   * (default false: null there), e.g. for a score head on the policy's trunk (PPO's value head).
   */
  hiddenStates?: boolean;
  /**
   * Make a sequence's numbers independent of the other requests sharing its steps (default
   * false): every step is padded past the GEMV kernels' row limit, so each row goes through the
   * same GEMM kernels however many rows the step holds (src/infer/runner.ts). Costs the fused
   * decode path and up to GEMV_MAX_ROWS + 1 rows a step. PPO's rollouts use it, so that 1 and N
   * data-parallel ranks sample the same bits. Dense models: a mixture of experts' expert matmuls
   * still take as many rows as the step routes to each expert.
   */
  batchInvariant?: boolean;
}

/** What GenerateOptions.onToken sees of each sampled token; the arrays are valid during the call only. */
export interface SampledToken {
  token: number;
  /** The raw next-token logits (V) it was sampled from: before temperature, penalties or filters. */
  logits: Float32Array;
  /** With EngineOptions.hiddenStates, the final-normed hidden row (C) of those logits; else null. */
  hidden: Float32Array | null;
}

export interface GenerateOptions extends SamplingOptions {
  /**
   * Most new tokens (default: up to the context, or what the whole cache holds). The prompt plus
   * maxTokens must fit the context (maxModelLen): more is an error, never silently clamped.
   */
  maxTokens?: number;
  /** Stop when the text contains one of these (the stop string is not returned). */
  stop?: readonly string[];
  /** Stop after one of these tokens (it is returned). */
  stopTokenIds?: readonly number[];
  /** Keep going after EOS. */
  ignoreEos?: boolean;
  /** Return the chosen token's log-prob (0) and the top-n (n > 0); absent: none. */
  logprobs?: number;
  /** Cancels the request: the iterator throws the signal's reason and the blocks are freed at once. */
  signal?: AbortSignal;
  /**
   * Called with each new token as it is sampled (Engine only: ThreadedEngine cannot send a
   * function to its worker). A throw fails the request.
   */
  onToken?: (t: SampledToken) => void;
}

/**
 * Why a request ended, the same from Engine and ThreadedEngine: 'stop' (EOS, a stop token or a
 * stop string) or 'length' (maxTokens reached). A cancelled or failed request throws instead.
 */
export type FinishReason = 'stop' | 'length';

/** A whole completion, as complete() returns it from Engine and ThreadedEngine. */
export interface Completion {
  tokens: number[];
  text: string;
  finishReason: FinishReason;
}

export interface GenerationDelta {
  /** New token ids since the previous delta. */
  tokens: number[];
  /** New text since the previous delta ('' without a tokenizer). */
  text: string;
  /** One entry per new token, when options.logprobs was given. */
  logprobs?: TokenLogprob[];
  /** Set on the last delta. */
  finishReason: FinishReason | null;
}

export interface EngineStats {
  blocks: { total: number; used: number; free: number; cachedFree: number; blockSize: number };
  kvCacheBytes: number;
  kvCacheDType: KvCacheDType;
  /** Hits / lookups of full prompt blocks in the prefix cache (0 when none). */
  prefixCacheHitRate: number;
  running: number;
  waiting: number;
  /** Steps run and tokens computed since creation. */
  steps: number;
  tokensComputed: number;
  preemptions: number;
}

/** @internal Gathers a stream of deltas into a Completion (complete() of both engines). */
export async function collect(stream: AsyncIterable<GenerationDelta>): Promise<Completion> {
  const tokens: number[] = [];
  let text = '';
  let finishReason: FinishReason = 'length';
  for await (const d of stream) {
    for (const t of d.tokens) tokens.push(t);
    text += d.text;
    if (d.finishReason) finishReason = d.finishReason;
  }
  return { tokens, text, finishReason };
}

/** What a scoring request (Engine.score) keeps: the continuation and the log-probs of it so far. */
interface ScoreTarget {
  /** Position of the row whose logits predict the continuation's first token (prompt length - 1). */
  from: number;
  continuation: ArrayLike<number>;
  /** 1 / (temperature + 1e-7): the logits' scale before the log-softmax. */
  inv: number;
  out: Float32Array;
  /** Offer the sequence's full blocks to the prefix cache (ScoreOptions.cache). */
  cache: boolean;
  /** A pinPrefix request: its blocks stay held when it ends. */
  pin: boolean;
}

/** Options of Engine.score. */
export interface ScoreOptions {
  /** Log-probs of logits / (temperature + 1e-7), as PPO scales the sampling distribution (default 1: raw logits, to 1e-7). */
  temperature?: number;
  /**
   * Leave this request's blocks in the prefix cache for later requests (default true). False:
   * it reads cached blocks but adds none, so later requests never depend on it (with pinPrefix
   * and only such requests, every hit is a pinned block: the same requests in the same order
   * then compute the same numbers, whatever ran before).
   */
  cache?: boolean;
}

/** One request in flight. */
class Sequence {
  /** A scoring request (no sampling): the rows whose logits it reads and where the log-probs go. */
  score: ScoreTarget | null = null;
  table: BlockTable | null = null;
  /** Tokens whose keys and values are in the cache. */
  numComputed = 0;
  readonly tokens: number[];
  readonly promptLength: number;
  /** Text of the output so far, made one token at a time (made at the first token). */
  detok: IncrementalDecoder | null = null;
  /** Decoded text not yet streamed: a tail that may begin a stop string (shorter than the longest). */
  held = '';
  finished = false;
  /** Its next chunk did not fit in what was left of the last step's budget: it goes first in the next. */
  deferred = false;
  /** Removes the abort listener. */
  detach: () => void = () => undefined;
  constructor(readonly id: number, prompt: ArrayLike<number>, readonly maxTotal: number, readonly sampler: Sampler,
    readonly opts: GenerateOptions, readonly stream: DeltaStream) {
    this.tokens = Array.from(prompt);
    this.promptLength = prompt.length;
  }
  get numOutput(): number {
    return this.tokens.length - this.promptLength;
  }
}

/** @internal The async iterator handed to the caller: a queue of deltas, an error, or the end. */
export class DeltaStream implements AsyncIterableIterator<GenerationDelta> {
  readonly #queue: GenerationDelta[] = [];
  #error: unknown = null;
  #done = false;
  #wake: (() => void) | null = null;
  onReturn: (() => void) | null = null;

  push(d: GenerationDelta): void {
    this.#queue.push(d);
    if (d.finishReason !== null) this.#done = true;
    this.#wake?.();
  }
  fail(err: unknown): void {
    if (this.#done) return;
    this.#error = err;
    this.#done = true;
    this.#wake?.();
  }
  async next(): Promise<IteratorResult<GenerationDelta>> {
    for (;;) {
      const d = this.#queue.shift();
      if (d) return { value: d, done: false };
      if (this.#error !== null) {
        const e = this.#error;
        this.#error = null;
        throw e;
      }
      if (this.#done) return { value: undefined, done: true };
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = null;
    }
  }
  async return(): Promise<IteratorResult<GenerationDelta>> {
    if (!this.#done) this.onReturn?.();
    this.#done = true;
    this.#queue.length = 0;
    this.#wake?.(); // a next() pending elsewhere ends too
    return { value: undefined, done: true };
  }
  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** The context an Engine over this config serves by default: maxSeqLen, times the factor of dynamic-base RoPE scaling. */
export function defaultMaxModelLen(cfg: ModelConfig): number {
  const rs = cfg.ropeScaling;
  return rs?.type === 'dynamic-base' ? Math.floor(cfg.maxSeqLen * rs.factor) : cfg.maxSeqLen;
}

export class Engine {
  readonly model: LlamaForCausalLM;
  readonly pool: BlockPool;
  readonly #runner: ModelRunner;
  readonly #tok: EngineTokenizer | undefined;
  readonly #eos: number | null;
  readonly #addBos: boolean;
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  readonly maxModelLen: number;
  readonly #waiting: Sequence[] = [];
  readonly #running: Sequence[] = [];
  #nextId = 0;
  #looping = false;
  #closed = false;
  /** The model was loaded by fromPretrained(): close() frees its weights too. */
  #ownsModel = false;
  #steps = 0;
  #tokens = 0;
  #preemptions = 0;
  readonly #hiddenStates: boolean;
  /** On CUDA, the engine's own stream, current around each step (null: the process stream). */
  readonly #stream: CudaStream | null;
  /** Block tables held by pinPrefix. */
  readonly #pinned: BlockTable[] = [];
  /** Called after every step with the blocks in use (tests watch the budget with it). */
  onStep: ((s: EngineStats) => void) | null = null;

  constructor(model: LlamaForCausalLM, opts: EngineOptions = {}) {
    if (opts.adapter !== undefined)
      throw new PatentGPTError('E_ARGUMENT', `Engine: adapter ${opts.adapter} is attached by Engine.fromPretrained(dir, { adapter }); for a model you pass in, call loadLora(model, adapter) first`);
    if (opts.device !== undefined && checkedDevice(opts.device) !== model.device)
      throw new PatentGPTError('E_DEVICE', `Engine: the model is on '${model.device}' but device '${opts.device}' was asked; move it with model.to('${opts.device}') first`);
    this.model = model;
    const cfg = model.config;
    const blockSize = opts.blockSize ?? 16;
    const kvCacheDType = opts.kvCacheDType ?? 'f32';
    if (!KV_CACHE_DTYPES.includes(kvCacheDType))
      throw new PatentGPTError('E_ARGUMENT', `Engine: kvCacheDType must be one of ${KV_CACHE_DTYPES.join(', ')}, got ${JSON.stringify(kvCacheDType)}`);
    const perToken = kvBytesPerToken({ nLayers: cfg.nLayers, nKvHeads: cfg.nKvHeads, headDim: cfg.dim / cfg.nHeads, bytesPerElement: bytesPerElement(kvCacheDType) });
    const numBlocks = blocksForBudget(opts.kvCacheBytes ?? 256 * 2 ** 20, blockSize, perToken);
    if (numBlocks < 1)
      throw new PatentGPTError('E_ARGUMENT', `Engine: kvCacheBytes ${opts.kvCacheBytes} holds no block of ${blockSize} tokens (${blockSize * perToken} bytes)`);
    this.pool = new BlockPool(numBlocks, blockSize, { enablePrefixCaching: opts.enablePrefixCaching ?? true });
    this.#tok = opts.tokenizer;
    this.#eos = opts.eosTokenId !== undefined ? opts.eosTokenId : (opts.tokenizer?.eosId ?? null);
    this.#addBos = opts.addBos ?? true;
    this.maxNumSeqs = opts.maxNumSeqs ?? 64;
    this.maxNumBatchedTokens = opts.maxNumBatchedTokens ?? 512;
    this.maxModelLen = opts.maxModelLen ?? defaultMaxModelLen(cfg);
    if (!Number.isInteger(this.maxModelLen) || this.maxModelLen < 2)
      throw new PatentGPTError('E_ARGUMENT', `Engine: maxModelLen must be an integer >= 2, got ${this.maxModelLen}`);
    if (!(this.maxNumSeqs >= 1) || !(this.maxNumBatchedTokens >= 1))
      throw new PatentGPTError('E_ARGUMENT', 'Engine: maxNumSeqs and maxNumBatchedTokens must be >= 1');
    this.#hiddenStates = opts.hiddenStates ?? false;
    this.#runner = new ModelRunner(model, { numBlocks, blockSize, partitionSize: opts.partitionSize, maxModelLen: this.maxModelLen, kvCacheDType, hiddenStates: this.#hiddenStates,
      batchInvariant: opts.batchInvariant ?? false });
    this.#stream = model.device === 'cuda' ? CudaStream.create() : null;
  }

  /**
   * An engine over a model folder it loads itself (with opts.adapter, a LoRA adapter on it,
   * unmerged; without opts.tokenizer, the tokenizer the folder records); close() frees the
   * weights with the caches.
   */
  static async fromPretrained(dir: string, opts: EngineOptions = {}): Promise<Engine> {
    const { adapter, ...rest } = opts;
    const device = checkedDevice(opts.device);
    const model = isQuantizedFolder(dir) ? await loadQuantized(dir) : await loadPretrained(dir); // patentgpt quantize's folders hold model.gguf
    let engine: Engine;
    try {
      if (adapter !== undefined) await loadLora(model, adapter);
      if (device !== model.device) model.to(device); // loaded on the host, then moved once
      const tokenizer = rest.tokenizer ?? loadFolderTokenizer(dir) ?? undefined; // text prompts work on any saved folder
      engine = new Engine(model, { ...rest, tokenizer });
    } catch (err) {
      model.dispose();
      throw err;
    }
    engine.#ownsModel = true;
    return engine;
  }

  /** Throws E_DISPOSED when the engine was closed (its caches, and weights it loaded, are gone). */
  #checkOpen(op: string): void {
    if (this.#closed) throw new PatentGPTError('E_DISPOSED', `Engine: ${op} after close(); the engine freed its caches: make a new Engine`);
  }

  /**
   * Streams the continuation of a prompt (text, with a tokenizer, or token ids). Invalid input
   * throws here, for this request alone.
   */
  generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): AsyncIterableIterator<GenerationDelta> {
    this.#checkOpen('generate()');
    const cfg = this.model.config;
    let ids: ArrayLike<number>;
    if (typeof prompt === 'string') {
      if (!this.#tok) throw new PatentGPTError('E_ARGUMENT', 'generate: a text prompt needs an engine made with a tokenizer (or pass token ids)');
      ids = this.#tok.encode(prompt, { bos: this.#addBos });
    } else ids = prompt;
    if (ids.length === 0) throw new PatentGPTError('E_ARGUMENT', 'generate: the prompt is empty');
    for (let i = 0; i < ids.length; i++)
      if (!Number.isInteger(ids[i]) || ids[i]! < 0 || ids[i]! >= cfg.vocabSize)
        throw new PatentGPTError('E_ARGUMENT', `generate: prompt token ${i} = ${ids[i]} is outside the vocabulary [0, ${cfg.vocabSize})`);
    const ctx = this.maxModelLen;
    if (ids.length >= ctx)
      throw new PatentGPTError('E_ARGUMENT', `generate: the prompt has ${ids.length} tokens; the context holds ${ctx} with room for at least one new token`);
    const sampler = new Sampler(options, ids); // validates the sampling options
    // By default: up to the context, or as much as the whole cache holds.
    const maxTokens = options.maxTokens ?? Math.max(1, Math.min(ctx, this.pool.numBlocks * this.pool.blockSize + 1) - ids.length);
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new PatentGPTError('E_ARGUMENT', `generate: maxTokens must be an integer >= 1, got ${maxTokens}`);
    // Asked for more than fits: an error, not a silent clamp (the caller would get less than asked).
    if (ids.length + maxTokens > ctx)
      throw new PatentGPTError('E_ARGUMENT', `generate: maxTokens ${maxTokens} + the prompt's ${ids.length} tokens exceed the context of ${ctx} tokens (maxModelLen); ask for at most ${ctx - ids.length} new tokens or shorten the prompt`);
    for (const t of options.stopTokenIds ?? [])
      if (!Number.isInteger(t) || t < 0 || t >= cfg.vocabSize)
        throw new PatentGPTError('E_ARGUMENT', `generate: stop token ${t} is not a token id of this model (vocabulary [0, ${cfg.vocabSize}))`);
    for (const s of options.stop ?? []) {
      if (typeof s !== 'string' || s.length === 0) throw new PatentGPTError('E_ARGUMENT', 'generate: stop strings must be non-empty strings');
      if (!this.#tok) throw new PatentGPTError('E_ARGUMENT', 'generate: stop strings need an engine made with a tokenizer');
    }
    const lp = options.logprobs;
    if (lp !== undefined && (!Number.isInteger(lp) || lp < 0 || lp > 20)) throw new PatentGPTError('E_ARGUMENT', `generate: logprobs must be an integer in [0, 20], got ${lp}`);
    const maxTotal = ids.length + maxTokens;
    // The last token sampled is never written to the cache: maxTotal - 1 tokens need slots.
    const need = this.pool.blocksFor(maxTotal - 1);
    if (need > this.pool.numBlocks)
      throw new PatentGPTError('E_KV_CACHE_FULL', `generate: ${ids.length} prompt tokens + ${maxTotal - ids.length} new need ${need} KV blocks; the whole cache has ${this.pool.numBlocks} (raise kvCacheBytes or lower maxTokens)`);
    if (options.signal?.aborted) throw options.signal.reason;
    const stream = new DeltaStream();
    const seq = new Sequence(this.#nextId++, ids, maxTotal, sampler, options, stream);
    const cancel = (): void => this.#cancel(seq, options.signal?.reason ?? new PatentGPTError('E_ABORTED', 'generate: aborted'));
    options.signal?.addEventListener('abort', cancel, { once: true });
    seq.detach = () => options.signal?.removeEventListener('abort', cancel);
    stream.onReturn = () => this.#cancel(seq, null);
    this.#waiting.push(seq);
    this.#kick();
    return stream;
  }

  /**
   * Log-probs of a given continuation after a prompt (teacher-forced, nothing sampled): element
   * j is log softmax(logits / (temperature + 1e-7))[continuation[j]] of the row that predicts it.
   * The tokens prompt ++ continuation (less its last) are prefilled through the paged cache like
   * a prompt, so a prompt prefix cached from earlier requests is not computed again (with prefix
   * caching on: valid only while the weights do not change, e.g. a frozen reference model).
   * Requests made together are batched as generate()'s are.
   */
  async score(prompt: ArrayLike<number>, continuation: ArrayLike<number>, options: ScoreOptions = {}): Promise<Float32Array> {
    this.#checkOpen('score()');
    const V = this.model.config.vocabSize;
    const temperature = options.temperature ?? 1;
    if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new PatentGPTError('E_ARGUMENT', `score: temperature must be a finite number >= 0, got ${temperature}`);
    if (prompt.length === 0) throw new PatentGPTError('E_ARGUMENT', 'score: the prompt is empty (the first continuation token needs a row before it)');
    for (const [name, ids] of [['prompt', prompt], ['continuation', continuation]] as const)
      for (let i = 0; i < ids.length; i++)
        if (!Number.isInteger(ids[i]) || ids[i]! < 0 || ids[i]! >= V)
          throw new PatentGPTError('E_ARGUMENT', `score: ${name} token ${i} = ${ids[i]} is outside the vocabulary [0, ${V})`);
    if (continuation.length === 0) return new Float32Array(0);
    const tokens = [...Array.from(prompt), ...Array.from(continuation).slice(0, -1)]; // the last token predicts nothing wanted
    if (tokens.length > this.maxModelLen)
      throw new PatentGPTError('E_ARGUMENT', `score: the prompt's ${prompt.length} tokens + ${continuation.length} to score exceed the context of ${this.maxModelLen} tokens (maxModelLen)`);
    const need = this.pool.blocksFor(tokens.length);
    if (need > this.pool.numBlocks)
      throw new PatentGPTError('E_KV_CACHE_FULL', `score: ${tokens.length} tokens need ${need} KV blocks; the whole cache has ${this.pool.numBlocks} (raise kvCacheBytes)`);
    const stream = new DeltaStream();
    const seq = new Sequence(this.#nextId++, tokens, tokens.length, new Sampler({}, tokens), {}, stream);
    seq.score = { from: prompt.length - 1, continuation, inv: 1 / (temperature + 1e-7), out: new Float32Array(continuation.length), cache: options.cache ?? true, pin: false };
    stream.onReturn = () => this.#cancel(seq, null);
    this.#waiting.push(seq);
    this.#kick();
    await collect(stream);
    return seq.score.out;
  }

  /**
   * Computes the keys and values of the full blocks of `prefix` and holds them in the prefix
   * cache until close(): never evicted, so every later request starting with them reads them
   * (with prefix caching on; for weights that do not change). Returns the tokens held (0 when
   * the prefix has no full block). Pins in a fixed order compute the same numbers every time.
   */
  async pinPrefix(prefix: ArrayLike<number>): Promise<number> {
    this.#checkOpen('pinPrefix()');
    if (!this.pool.enablePrefixCaching) throw new PatentGPTError('E_ARGUMENT', 'pinPrefix: the engine was made with enablePrefixCaching: false; pinned blocks would never be found');
    const n = Math.floor(Math.min(prefix.length, this.maxModelLen) / this.pool.blockSize) * this.pool.blockSize;
    if (n === 0) return 0;
    const V = this.model.config.vocabSize;
    const tokens = Array.from(prefix).slice(0, n);
    for (let i = 0; i < n; i++)
      if (!Number.isInteger(tokens[i]) || tokens[i]! < 0 || tokens[i]! >= V) throw new PatentGPTError('E_ARGUMENT', `pinPrefix: token ${i} = ${tokens[i]} is outside the vocabulary [0, ${V})`);
    if (this.pool.blocksFor(n) > this.pool.stats().free)
      throw new PatentGPTError('E_KV_CACHE_FULL', `pinPrefix: ${n} tokens need ${this.pool.blocksFor(n)} blocks; ${this.pool.stats().free} are free (raise kvCacheBytes or pin less)`);
    const stream = new DeltaStream();
    const seq = new Sequence(this.#nextId++, tokens, n, new Sampler({}, tokens), {}, stream);
    seq.score = { from: n, continuation: [], inv: 1, out: new Float32Array(0), cache: true, pin: true }; // no logits: from is past the last row
    this.#waiting.push(seq);
    this.#kick();
    await collect(stream);
    return n;
  }

  /** Tokens of a whole completion (a convenience over generate()). */
  async complete(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Promise<Completion> {
    this.#checkOpen('complete()');
    return collect(this.generate(prompt, options));
  }

  stats(): EngineStats {
    this.#checkOpen('stats()');
    const s = this.pool.stats();
    return {
      blocks: { total: s.numBlocks, used: s.used, free: s.free, cachedFree: s.cachedFree, blockSize: this.pool.blockSize },
      kvCacheBytes: this.#runner.cacheBytes,
      kvCacheDType: this.#runner.kvCacheDType,
      prefixCacheHitRate: s.prefixQueries === 0 ? 0 : s.prefixHits / s.prefixQueries,
      running: this.#running.length,
      waiting: this.#waiting.length,
      steps: this.#steps,
      tokensComputed: this.#tokens,
      preemptions: this.#preemptions,
    };
  }

  /**
   * Fails every request and frees the KV caches and the decode step's buffers, and the weights
   * when fromPretrained() loaded them (a model passed in stays the caller's). Idempotent; any
   * later use throws E_DISPOSED.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of [...this.#running, ...this.#waiting]) this.#cancel(s, new PatentGPTError('E_DISPOSED', 'generate: the engine was closed'));
    this.#runner.close();
    this.#stream?.dispose();
    if (this.#ownsModel) this.model.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }

  // ---- scheduling ----

  #kick(): void {
    if (this.#looping) return;
    this.#looping = true;
    void this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      while (!this.#closed && (this.#running.length > 0 || this.#waiting.length > 0)) {
        await nextTurn(); // let I/O and abort handlers run between steps
        if (this.#closed) break;
        this.#step();
      }
    } finally {
      this.#looping = false;
    }
  }

  #release(seq: Sequence): void {
    if (seq.table) this.pool.free(seq.table);
    seq.table = null;
    seq.numComputed = 0;
  }

  #remove(seq: Sequence): void {
    seq.detach();
    for (const list of [this.#running, this.#waiting]) {
      const i = list.indexOf(seq);
      if (i >= 0) list.splice(i, 1);
    }
    this.#release(seq);
  }

  #cancel(seq: Sequence, reason: unknown): void {
    if (seq.finished) return;
    seq.finished = true;
    this.#remove(seq);
    if (reason !== null) seq.stream.fail(reason);
  }

  #preempt(seq: Sequence): void {
    this.#preemptions++;
    this.#running.splice(this.#running.indexOf(seq), 1);
    this.#release(seq); // recompute later: its tokens (prompt + output so far) become its prompt
    let i = 0;
    while (i < this.#waiting.length && this.#waiting[i]!.id < seq.id) i++;
    this.#waiting.splice(i, 0, seq);
  }

  /** Grows seq's table for tokens [numComputed, numComputed + n), preempting later arrivals if needed. */
  #reserve(seq: Sequence, n: number): boolean {
    const table = seq.table!;
    for (;;) {
      if (this.pool.canAppend(table, seq.numComputed, seq.numComputed + n)) {
        this.#runner.copyBlocks(this.pool.prepareWrite(table, seq.numComputed, seq.numComputed + n));
        return true;
      }
      const victim = this.#running[this.#running.length - 1]!;
      this.#preempt(victim);
      if (victim === seq) return false;
    }
  }

  #schedule(): { seq: Sequence; start: number; end: number }[] {
    let budget = this.maxNumBatchedTokens;
    const plan: { seq: Sequence; start: number; end: number }[] = [];
    let preempted = false;
    // chunks that found no room last step go first: the first always fits (a chunk is at most the budget)
    const order = [...this.#running.filter((s) => s.deferred), ...this.#running.filter((s) => !s.deferred)];
    if (this.#waiting[0]?.deferred && this.#running.length < this.maxNumSeqs) {
      const head = this.#admitHead(budget); // the head of the queue waited for room: decodes cannot starve it
      if (head) {
        plan.push(head);
        budget -= head.end - head.start;
      }
    }
    for (const seq of order) {
      if (!this.#running.includes(seq)) continue; // preempted by an earlier sequence this step
      const n = Math.min(seq.tokens.length - seq.numComputed, this.maxNumBatchedTokens);
      seq.deferred = n > budget; // never cut at the step's leftover: wait for the next step
      if (seq.deferred) continue;
      const before = this.#preemptions;
      if (!this.#reserve(seq, n)) {
        preempted = true;
        continue;
      }
      if (this.#preemptions !== before) preempted = true;
      plan.push({ seq, start: seq.numComputed, end: seq.numComputed + n });
      budget -= n;
    }
    // Plans of sequences preempted after being planned are dropped.
    const live = plan.filter((p) => this.#running.includes(p.seq));
    if (preempted) return live;
    while (budget > 0 && this.#waiting.length > 0 && this.#running.length < this.maxNumSeqs) {
      const head = this.#admitHead(budget);
      if (!head) break; // first come, first served: nobody overtakes the head of the queue
      live.push(head);
      budget -= head.end - head.start;
    }
    return live;
  }

  /**
   * Moves the head of the waiting queue to running with its first chunk (the whole prompt, or the
   * budget's worth of a longer one) when that fits `budget` and the free blocks; else leaves it
   * waiting (deferred when it lacked budget, so it goes first next step) and returns null.
   */
  #admitHead(budget: number): { seq: Sequence; start: number; end: number } | null {
    const seq = this.#waiting[0]!;
    // a scoring request computes every row it reads logits of: its cached prefix ends before them
    const { table, cachedTokens, lookups } = this.pool.allocatePrefix(seq.id, seq.score ? seq.tokens.slice(0, seq.score.from + 1) : seq.tokens);
    const n = Math.min(seq.tokens.length - cachedTokens, this.maxNumBatchedTokens);
    seq.deferred = n > budget;
    if (seq.deferred || !this.pool.canAppend(table, cachedTokens, cachedTokens + n)) {
      this.pool.cancelPrefix(table, lookups);
      return null;
    }
    seq.table = table;
    seq.numComputed = cachedTokens;
    this.#runner.copyBlocks(this.pool.prepareWrite(table, cachedTokens, cachedTokens + n));
    this.#waiting.shift();
    this.#running.push(seq);
    return { seq, start: cachedTokens, end: cachedTokens + n };
  }

  #step(): void {
    const plan = this.#schedule();
    if (plan.length === 0) return;
    const items: StepItem[] = plan.map((p) => ({ tokens: p.seq.tokens, start: p.start, end: p.end, table: p.seq.table!, logitsFrom: p.seq.score?.from }));
    let logits: (Float32Array | null)[];
    try {
      logits = this.#stream ? this.#stream.run(() => this.#runner.step(items)) : this.#runner.step(items);
    } catch (err) {
      for (const p of plan) this.#cancel(p.seq, err); // the step's requests fail; the engine goes on
      return;
    }
    this.#steps++;
    const hidden = this.#hiddenStates ? this.#runner.hidden : null;
    plan.forEach((p, i) => {
      const seq = p.seq;
      this.#tokens += p.end - p.start;
      seq.numComputed = p.end;
      if (!seq.score || seq.score.cache) this.pool.markComputed(seq.table!, seq.tokens, p.end);
      const row = logits[i];
      try {
        if (seq.score) this.#scored(seq, p.start, p.end, row);
        else if (row) this.#emit(seq, row, hidden?.[i] ?? null);
      } catch (err) {
        this.#cancel(seq, err); // e.g. a token the tokenizer cannot decode: this request fails, the engine goes on
      }
    });
    this.onStep?.(this.stats());
  }

  /** Keeps a scoring request's log-probs of the rows [start, end) computed (rows (k, V) from its first wanted one), and ends it after its last. */
  #scored(seq: Sequence, start: number, end: number, rows: Float32Array | null): void {
    const s = seq.score!, V = this.model.config.vocabSize, inv = s.inv;
    const first = Math.max(start, s.from);
    for (let pos = first; pos < end && rows && pos - s.from < s.out.length; pos++) {
      const j = pos - s.from, at = (pos - first) * V;
      let m = -Infinity;
      for (let v = 0; v < V; v++) m = Math.max(m, rows[at + v]! * inv);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(rows[at + v]! * inv - m);
      s.out[j] = rows[at + s.continuation[j]!]! * inv - m - Math.log(z);
    }
    if (end < seq.tokens.length) return;
    seq.finished = true;
    if (s.pin) {
      this.#pinned.push(seq.table!); // held: its blocks stay referenced, so never evicted
      seq.table = null;
    }
    this.#remove(seq);
    seq.stream.push({ tokens: [], text: '', finishReason: 'length' });
  }

  /** Samples seq's next token from its logits, streams it, and finishes the request if it must stop. */
  #emit(seq: Sequence, logits: Float32Array, hidden: Float32Array | null): void {
    const o = seq.opts;
    const token = seq.sampler.sample(logits);
    o.onToken?.({ token, logits, hidden });
    seq.sampler.accept(token);
    seq.tokens.push(token);
    const delta: GenerationDelta = { tokens: [token], text: '', finishReason: null };
    if (o.logprobs !== undefined) delta.logprobs = [logprobsOf(logits, token, o.logprobs)];
    let finish: FinishReason | null = null;
    if ((token === this.#eos && !o.ignoreEos) || o.stopTokenIds?.includes(token)) finish = 'stop';
    else if (seq.tokens.length >= seq.maxTotal) finish = 'length';
    if (this.#tok) {
      // New text from an incremental decoder that started after the prompt (its last pieces set
      // the first token's space): O(1) per token. EOS adds no text; the end flushes an
      // unfinished character as decode() would show it.
      seq.detok ??= incrementalDecoder(this.#tok, seq.tokens.slice(0, seq.promptLength));
      if (!(token === this.#eos && !o.ignoreEos)) seq.held += seq.detok.push(token);
      if (finish !== null) seq.held += seq.detok.flush();
      const text = seq.held;
      // Held text is shorter than the longest stop string, so a search costs O(stop lengths).
      let cut = -1;
      for (const s of o.stop ?? []) {
        const at = text.indexOf(s);
        if (at >= 0 && (cut < 0 || at < cut)) cut = at;
      }
      let safe = text.length;
      if (cut >= 0) {
        finish = 'stop';
        safe = cut;
      } else if (finish === null) {
        // Hold back a tail that may begin a stop string.
        for (const s of o.stop ?? [])
          for (let k = Math.min(s.length - 1, text.length); k > 0; k--)
            if (text.endsWith(s.slice(0, k))) {
              safe = Math.min(safe, text.length - k);
              break;
            }
      }
      delta.text = text.slice(0, safe);
      seq.held = finish === null ? text.slice(safe) : '';
    }
    if (finish !== null) {
      delta.finishReason = finish;
      seq.finished = true;
      this.#remove(seq);
    }
    seq.stream.push(delta);
  }
}

/** The engine's device option, checked: a known device this process can use. */
function checkedDevice(device: Device | undefined): Device {
  const d = device ?? 'cpu';
  if (d !== 'cpu' && d !== 'cuda') throw new PatentGPTError('E_ARGUMENT', `Engine: device must be 'cpu' or 'cuda', got ${JSON.stringify(d)}`);
  const why = deviceUnavailableReason(d);
  if (why) throw new PatentGPTError('E_DEVICE', `Engine: cannot use device '${d}': ${why}; use 'cpu' (patentgpt info shows what the binary has)`);
  return d;
}
