// A generator over any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, llama.cpp server, our own
// serve): POST {baseURL}/chat/completions (or /completions) with a Bearer key.
//
//   complete() ── concurrency slot ──► rate limits (requests/min, tokens/min: token buckets)
//                    ──► fetch with a per-request timeout ──► 2xx: parse ──► text + usage
//                                                   └─ 408/429/5xx/network/timeout: wait
//                                                      (Retry-After, else exponential backoff
//                                                      with jitter) and try again, up to maxRetries
// Other 4xx are the request's own fault and never retried; a 2xx body that is not the API's JSON
// fails at once as 'malformed-response' (as the official openai client does). Every outcome is
// counted in stats().
import { PatentGPTError } from '../../errors.js';
import { GenerateError, type ChatMessage, type FailureReason, type GenerateRequest, type GenerateResult, type Generator, validateMessages, validateParams } from './types.js';

export interface HttpGeneratorOptions {
  /** Base URL of the API, e.g. https://api.openai.com/v1 or http://localhost:8000/v1. */
  baseURL: string;
  /** Sent as `Authorization: Bearer <apiKey>` (omitted when empty: local servers). */
  apiKey?: string;
  /** Model name sent with every request. */
  model: string;
  /** 'chat' (default): /chat/completions with messages; 'completions': /completions with the messages as one prompt. */
  api?: 'chat' | 'completions';
  /** Per-request timeout in ms, connection to last byte (default 60 s). */
  timeoutMs?: number;
  /** Retries after the first attempt (default 4). */
  maxRetries?: number;
  /** Backoff before retry n (0-based): min(maxMs, initialMs * 2^n), less up to 25% jitter. Defaults 500 ms, 20 s. */
  backoff?: { initialMs?: number; maxMs?: number };
  /** A Retry-After longer than this is ignored in favour of the backoff (default 60 s). */
  maxRetryAfterMs?: number;
  /** Requests started per minute (default: unlimited). */
  requestsPerMinute?: number;
  /** Tokens per minute, counted as the server does: prompt (estimated, then corrected) + maxTokens. */
  tokensPerMinute?: number;
  /** Bucket sizes: how many requests/tokens may start at once after an idle spell (default: one second's worth). */
  burst?: { requests?: number; tokens?: number };
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Extra headers (e.g. OpenAI-Organization). */
  headers?: Record<string, string>;
  /** For tests: the fetch and the random source of the jitter. */
  fetch?: typeof fetch;
  random?: () => number;
}

export interface HttpStats {
  /** Requests handed to complete(). */
  requests: number;
  /** HTTP attempts made (requests + retries). */
  attempts: number;
  retries: number;
  succeeded: number;
  /** Final failures by reason. */
  failed: Partial<Record<FailureReason, number>>;
  /** Attempts that ended in each retriable condition (429, 5xx, timeout, network). */
  transient: { rateLimited: number; serverError: number; timeout: number; network: number };
  /** Time spent waiting on the rate limits (ms, summed over requests). */
  rateLimitWaitMs: number;
  usage: { promptTokens: number; completionTokens: number };
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = (): void => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const t = setTimeout(done, Math.max(0, ms));
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A token bucket: `rate` units per second refill up to `capacity`. take(n) waits until n units are
 * there (or the bucket is full, for a request larger than the bucket) and removes them; charge()
 * corrects a guess afterwards (the level may go below zero: later takes wait longer).
 */
export class TokenBucket {
  #level: number;
  #last: number;
  constructor(readonly rate: number, readonly capacity: number, private readonly now: () => number = () => performance.now()) {
    if (!(rate > 0) || !(capacity >= 1)) throw new PatentGPTError('E_ARGUMENT', `TokenBucket: rate must be > 0 and capacity >= 1, got ${rate}, ${capacity}`);
    this.#level = capacity;
    this.#last = now();
  }

  #refill(): void {
    const t = this.now();
    this.#level = Math.min(this.capacity, this.#level + ((t - this.#last) / 1000) * this.rate);
    this.#last = t;
  }

  /** Waits for n units; resolves with the time waited (ms). */
  async take(n: number, signal?: AbortSignal): Promise<number> {
    const t0 = this.now();
    const need = Math.min(n, this.capacity);
    for (;;) {
      this.#refill();
      if (this.#level >= need) {
        this.#level -= n;
        return this.now() - t0;
      }
      await sleep(Math.ceil(((need - this.#level) / this.rate) * 1000), signal);
    }
  }

  charge(n: number): void {
    this.#refill();
    this.#level = Math.min(this.capacity, this.#level - n);
  }
}

/** At most `limit` holders at once; waiters are served first come, first served. */
export class Semaphore {
  #free: number;
  readonly #waiters: (() => void)[] = [];
  constructor(readonly limit: number) {
    this.#free = limit;
  }
  async acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw signal.reason;
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(wake);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal!.reason);
      };
      this.#waiters.push(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

/** Milliseconds a response asks us to wait (retry-after-ms, or Retry-After in seconds or as a date), or null. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | null {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const ra = headers.get('retry-after');
  if (ra === null || ra.trim() === '') return null;
  const sec = Number(ra);
  if (Number.isFinite(sec)) return Math.max(0, sec * 1000);
  const date = Date.parse(ra);
  return Number.isFinite(date) ? Math.max(0, date - now) : null;
}

/** Rough token count of a text for the tokens-per-minute budget before the server reports usage:
 *  UTF-8 bytes / 3 (over-counts English at ~4 bytes a token, about right for Chinese). */
export function estimateTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 3);
}

/** The messages as one prompt for /completions: system and user turns as paragraphs. */
export function messagesAsPrompt(messages: readonly ChatMessage[]): string {
  return messages.map((m) => (m.role === 'assistant' ? `Assistant: ${m.content}` : m.content)).join('\n\n') + '\n\n';
}

const RETRIABLE_STATUS = (s: number): boolean => s === 408 || s === 429 || s >= 500;

/** One attempt's failure: whether a retry may help, and how long the server asked us to wait. */
class AttemptError extends Error {
  constructor(readonly reason: FailureReason, message: string, readonly retriable: boolean, readonly status?: number, readonly waitMs: number | null = null) {
    super(message);
  }
}

export class OpenAIHttpGenerator implements Generator {
  readonly backend = 'http';
  readonly model: string;
  readonly concurrency: number;
  readonly #url: string;
  readonly #opts: HttpGeneratorOptions;
  readonly #headers: Record<string, string>;
  readonly #slots: Semaphore;
  readonly #requestBucket: TokenBucket | null;
  readonly #tokenBucket: TokenBucket | null;
  readonly #fetch: typeof fetch;
  readonly #random: () => number;
  readonly #stats: HttpStats = {
    requests: 0, attempts: 0, retries: 0, succeeded: 0, failed: {},
    transient: { rateLimited: 0, serverError: 0, timeout: 0, network: 0 }, rateLimitWaitMs: 0, usage: { promptTokens: 0, completionTokens: 0 },
  };

  constructor(opts: HttpGeneratorOptions) {
    const bad = (field: string, msg: string): never => {
      throw new PatentGPTError('E_CONFIG', `OpenAIHttpGenerator: ${field} ${msg}`);
    };
    const base = URL.canParse(String(opts.baseURL)) ? new URL(opts.baseURL) : bad('baseURL', `must be an http(s) URL, got '${opts.baseURL}'`);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') bad('baseURL', `must be an http(s) URL, got '${opts.baseURL}'`);
    if (typeof opts.model !== 'string' || opts.model === '') bad('model', 'must name the model to ask for');
    const api = opts.api ?? 'chat';
    if (api !== 'chat' && api !== 'completions') bad('api', `must be 'chat' or 'completions', got '${String(api)}'`);
    const posInt = (v: number | undefined, field: string, min: number): void => {
      if (v !== undefined && (!Number.isInteger(v) || v < min)) bad(field, `must be an integer >= ${min}, got ${v}`);
    };
    posInt(opts.timeoutMs, 'timeoutMs', 1);
    posInt(opts.maxRetries, 'maxRetries', 0);
    posInt(opts.concurrency, 'concurrency', 1);
    for (const [f, v] of [['requestsPerMinute', opts.requestsPerMinute], ['tokensPerMinute', opts.tokensPerMinute]] as const)
      if (v !== undefined && !(v > 0)) bad(f, `must be > 0, got ${v}`);
    this.model = opts.model;
    this.concurrency = opts.concurrency ?? 4;
    this.#opts = opts;
    this.#url = base.href.replace(/\/+$/, '') + (api === 'chat' ? '/chat/completions' : '/completions');
    this.#headers = { 'content-type': 'application/json', accept: 'application/json', ...(opts.headers ?? {}) };
    if (opts.apiKey) this.#headers.authorization = `Bearer ${opts.apiKey}`;
    this.#slots = new Semaphore(this.concurrency);
    const rpm = opts.requestsPerMinute;
    const tpm = opts.tokensPerMinute;
    this.#requestBucket = rpm ? new TokenBucket(rpm / 60, opts.burst?.requests ?? Math.max(1, Math.floor(rpm / 60))) : null;
    this.#tokenBucket = tpm ? new TokenBucket(tpm / 60, opts.burst?.tokens ?? Math.max(1, Math.floor(tpm / 60))) : null;
    this.#fetch = opts.fetch ?? globalThis.fetch;
    this.#random = opts.random ?? Math.random;
  }

  stats(): HttpStats {
    return structuredClone(this.#stats);
  }

  /** The JSON body of a request, as the OpenAI API defines it (undefined fields left out). */
  body(req: GenerateRequest): Record<string, unknown> {
    const b: Record<string, unknown> = { model: this.model };
    if ((this.#opts.api ?? 'chat') === 'chat') b.messages = req.messages.map((m) => ({ role: m.role, content: m.content }));
    else b.prompt = messagesAsPrompt(req.messages);
    if (req.maxTokens !== undefined) b.max_tokens = req.maxTokens;
    if (req.temperature !== undefined) b.temperature = req.temperature;
    if (req.topP !== undefined) b.top_p = req.topP;
    if (req.seed !== undefined) b.seed = req.seed;
    if (req.stop !== undefined && req.stop.length > 0) b.stop = req.stop;
    return b;
  }

  async complete(req: GenerateRequest): Promise<GenerateResult> {
    validateMessages(req.messages, 'OpenAIHttpGenerator');
    validateParams(req, 'OpenAIHttpGenerator');
    const st = this.#stats;
    st.requests++;
    const body = JSON.stringify(this.body(req));
    const estimate = estimateTokens(req.messages.map((m) => m.content).join('\n')) + (req.maxTokens ?? 512);
    const maxRetries = this.#opts.maxRetries ?? 4;
    const fail = (reason: FailureReason, message: string, attempts: number, status?: number): GenerateError => {
      st.failed[reason] = (st.failed[reason] ?? 0) + 1;
      const code = reason === 'aborted' ? 'E_ABORTED' : reason === 'malformed-response' ? 'E_FORMAT' : reason === 'client-error' ? 'E_ARGUMENT' : 'E_IO';
      return new GenerateError(code, reason, `${this.#url}: ${message}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`, { status, attempts });
    };
    try {
      await this.#slots.acquire(req.signal);
    } catch {
      throw fail('aborted', 'aborted while waiting for a slot', 0);
    }
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          if (this.#requestBucket) st.rateLimitWaitMs += await this.#requestBucket.take(1, req.signal);
          if (this.#tokenBucket) st.rateLimitWaitMs += await this.#tokenBucket.take(estimate, req.signal);
        } catch {
          throw fail('aborted', 'aborted while waiting on the rate limit', attempt);
        }
        st.attempts++;
        let err: AttemptError;
        try {
          const res = await this.#attempt(body, req.signal);
          // The server's count replaces the guess (when it reports one).
          if (res.usage.promptTokens > 0) this.#tokenBucket?.charge(res.usage.promptTokens + (req.maxTokens ?? 512) - estimate);
          st.succeeded++;
          st.usage.promptTokens += res.usage.promptTokens;
          st.usage.completionTokens += res.usage.completionTokens;
          return res;
        } catch (e) {
          if (!(e instanceof AttemptError)) throw e;
          err = e;
        }
        if (err.reason === 'aborted' || !err.retriable || attempt >= maxRetries) throw fail(err.reason, err.message, attempt + 1, err.status);
        const t = st.transient;
        if (err.reason === 'rate-limited') t.rateLimited++;
        else if (err.reason === 'server-error') t.serverError++;
        else if (err.reason === 'timeout') t.timeout++;
        else t.network++;
        st.retries++;
        try {
          await sleep(this.#retryDelay(attempt, err.waitMs), req.signal);
        } catch {
          throw fail('aborted', `aborted while waiting to retry after: ${err.message}`, attempt + 1, err.status);
        }
      }
    } finally {
      this.#slots.release();
    }
  }

  #retryDelay(attempt: number, waitMs: number | null): number {
    if (waitMs !== null && waitMs <= (this.#opts.maxRetryAfterMs ?? 60_000)) return waitMs;
    const initial = this.#opts.backoff?.initialMs ?? 500;
    const max = this.#opts.backoff?.maxMs ?? 20_000;
    return Math.min(max, initial * 2 ** attempt) * (1 - 0.25 * this.#random());
  }

  async #attempt(body: string, signal: AbortSignal | undefined): Promise<GenerateResult> {
    const timeout = AbortSignal.timeout(this.#opts.timeoutMs ?? 60_000);
    const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let status = 0;
    let text: string;
    let headers: Headers;
    try {
      const res = await this.#fetch(this.#url, { method: 'POST', headers: this.#headers, body, signal: both });
      status = res.status;
      headers = res.headers;
      text = await res.text();
    } catch (e) {
      if (signal?.aborted) throw new AttemptError('aborted', 'aborted', false);
      if (timeout.aborted) throw new AttemptError('timeout', `no complete answer within ${this.#opts.timeoutMs ?? 60_000} ms`, true);
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new AttemptError('network', `request failed: ${cause?.code ?? cause?.message ?? (e as Error).message}`, true);
    }
    if (status < 200 || status >= 300) {
      const detail = apiErrorMessage(text);
      const reason: FailureReason = status === 429 ? 'rate-limited' : status >= 500 ? 'server-error' : status === 408 ? 'timeout' : 'client-error';
      throw new AttemptError(reason, `HTTP ${status}${detail ? `: ${detail}` : ''}`, RETRIABLE_STATUS(status), status, retryAfterMs(headers));
    }
    return this.#parse(text, status);
  }

  #parse(text: string, status: number): GenerateResult {
    const malformed = (why: string): AttemptError =>
      new AttemptError('malformed-response', `HTTP ${status} with a malformed body (${why}): ${JSON.stringify(text.slice(0, 120))}`, false, status);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw malformed('not JSON');
    }
    const choice = (json as { choices?: unknown[] } | null)?.choices?.[0] as { message?: { content?: unknown }; text?: unknown; finish_reason?: unknown } | undefined;
    if (!choice || typeof choice !== 'object') throw malformed('no choices[0]');
    const content = (this.#opts.api ?? 'chat') === 'chat' ? choice.message?.content : choice.text;
    if (typeof content !== 'string') throw malformed((this.#opts.api ?? 'chat') === 'chat' ? 'choices[0].message.content is not a string' : 'choices[0].text is not a string');
    const usage = (json as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } }).usage;
    const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
    const model = (json as { model?: unknown }).model;
    return {
      text: content,
      finishReason: typeof choice.finish_reason === 'string' ? choice.finish_reason : 'stop',
      usage: { promptTokens: n(usage?.prompt_tokens), completionTokens: n(usage?.completion_tokens) },
      model: typeof model === 'string' && model !== '' ? model : this.model,
    };
  }
}

/** The message of an OpenAI-style error body ({error: {message}}), else the body's start. */
function apiErrorMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    if (typeof m === 'string') return m;
  } catch {
    // not JSON: show the start of it
  }
  return text.slice(0, 200).trim();
}
