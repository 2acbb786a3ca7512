// The generator interface that rewriting and synthesis run on: a chat request in, a text reply
// (with token usage) out. Three backends implement it: OpenAIHttpGenerator (any OpenAI-compatible
// endpoint), EngineGenerator (this package's own inference engine) and OfflineGenerator (rule-based,
// no model: the deterministic backend of tests and dry runs).
import { PatentGPTError, type ErrorCode } from '../../errors.js';
import type { Document } from '../document.js';
import type { PromptLang, TemplateName, TemplateOptions } from './templates.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Sampling and limits of one request; every backend honours what it can and says what it used. */
export interface GenerationParams {
  /** Most new tokens (default 512). */
  maxTokens?: number;
  /** 0 = greedy (default 0, so a run is reproducible where the backend allows). */
  temperature?: number;
  topP?: number;
  /** Seed of the request's sampling (engine: exact; HTTP: passed on, best effort on the server). */
  seed?: number;
  /** Stop strings (not returned). */
  stop?: string[];
}

export interface GenerateRequest extends GenerationParams {
  messages: ChatMessage[];
  /** Cancels the request (and its retries). */
  signal?: AbortSignal;
  /** What the request is for. Local backends may use it (the offline backend answers from the
   *  document); it is never sent to a server. */
  task?: { template: TemplateName; document: Document; lang: PromptLang; options?: TemplateOptions };
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface GenerateResult {
  text: string;
  /** 'stop' (the model ended), 'length' (maxTokens reached), or what the server said. */
  finishReason: string;
  usage: Usage;
  /** The model that answered (the server's name for it, or the folder of an engine model). */
  model: string;
}

export interface Generator {
  /** 'http', 'engine' or 'offline': written into every output's provenance. */
  readonly backend: string;
  /** Model name written into provenance. */
  readonly model: string;
  /** Requests worth keeping in flight at once (the synthesis runner uses it as its window). */
  readonly concurrency: number;
  complete(request: GenerateRequest): Promise<GenerateResult>;
}

/** Why a request failed, for the closing report (one counter per reason). */
export type FailureReason =
  | 'timeout' // no answer within the per-request timeout, after the retries
  | 'network' // connection refused/reset, DNS, ..., after the retries
  | 'rate-limited' // 429 after the retries
  | 'server-error' // 5xx after the retries
  | 'client-error' // 4xx other than 408/429: the request itself is wrong; never retried
  | 'malformed-response' // a 2xx whose body is not the JSON the API defines
  | 'aborted' // the caller's AbortSignal
  | 'engine-error'; // the local engine refused the request (prompt too long, ...)

/** A failed generation request: a PatentGPTError with the reason it is counted under. */
export class GenerateError extends PatentGPTError {
  readonly reason: FailureReason;
  /** HTTP status when there was one. */
  readonly status: number | undefined;
  /** Attempts made (1 + retries). */
  readonly attempts: number;
  constructor(code: ErrorCode, reason: FailureReason, message: string, opts: { status?: number; attempts?: number } = {}) {
    super(code, message);
    this.name = 'GenerateError';
    this.reason = reason;
    this.status = opts.status;
    this.attempts = opts.attempts ?? 1;
  }
}

/** Checks the params every backend shares; errors name the field. */
export function validateParams(p: GenerationParams, where: string): void {
  const bad = (field: string, msg: string): never => {
    throw new PatentGPTError('E_ARGUMENT', `${where}: ${field} ${msg}`);
  };
  if (p.maxTokens !== undefined && (!Number.isInteger(p.maxTokens) || p.maxTokens < 1)) bad('maxTokens', `must be an integer >= 1, got ${p.maxTokens}`);
  if (p.temperature !== undefined && !(p.temperature >= 0 && p.temperature <= 2)) bad('temperature', `must be in [0, 2], got ${p.temperature}`);
  if (p.topP !== undefined && !(p.topP > 0 && p.topP <= 1)) bad('topP', `must be in (0, 1], got ${p.topP}`);
  if (p.seed !== undefined && (!Number.isSafeInteger(p.seed) || p.seed < 0)) bad('seed', `must be a non-negative integer, got ${p.seed}`);
  if (p.stop !== undefined && (!Array.isArray(p.stop) || p.stop.some((s) => typeof s !== 'string' || s.length === 0)))
    bad('stop', 'must be a list of non-empty strings');
}

export function validateMessages(messages: unknown, where: string): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new PatentGPTError('E_ARGUMENT', `${where}: messages must be a non-empty list`);
  messages.forEach((m: unknown, i) => {
    const r = m as Partial<ChatMessage> | null;
    if (!r || (r.role !== 'system' && r.role !== 'user' && r.role !== 'assistant') || typeof r.content !== 'string')
      throw new PatentGPTError('E_ARGUMENT', `${where}: messages[${i}] must be {role: system|user|assistant, content: string}`);
  });
}
