// The OpenAI protocol of the server, apart from HTTP: errors in OpenAI's JSON shape, a request
// body turned into prompt ids and engine options (a "plan"), and the response objects (whole and
// streamed chunks) built from the engine's deltas. Fields the engine cannot honour are refused
// here with a 400 naming the field.
import { randomBytes } from 'node:crypto';
import { PatentGPTError } from '../errors.js';
import type { FinishReason, GenerateOptions } from '../infer/engine.js';
import type { TokenLogprob } from '../infer/sampler.js';
import { SentencePieceTokenizer } from '../tokenizer/index.js';
import type { ServeMessage, ServeTokenizer, ServedModel } from './model.js';
import type { ChatBody, ChatMessageBody, CommonBody, CompletionBody } from './schemas.js';

/** An error answered as OpenAI's {error: {message, type, param, code}}. */
export class OpenAIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null): OpenAIError => new OpenAIError(400, message, 'invalid_request_error', param, code);

/** A failure of the engine as the client should see it. */
export function engineError(err: unknown): OpenAIError {
  if (err instanceof OpenAIError) return err;
  const code = err instanceof PatentGPTError ? err.code : null;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'E_ARGUMENT' || code === 'E_KV_CACHE_FULL' || code === 'E_DATA') return badRequest(message, null, code === 'E_KV_CACHE_FULL' ? 'context_length_exceeded' : null);
  if (code === 'E_DISPOSED') return new OpenAIError(503, `the engine is shutting down: ${message}`, 'server_error', null, 'unavailable');
  return new OpenAIError(500, `the engine failed: ${message}`, 'server_error', null, null);
}

/** One choice to generate: prompt ids and the engine options (without the signal). */
export interface ChoicePlan {
  index: number;
  /** Index of the prompt it continues (usage counts each prompt once). */
  prompt: number;
  ids: number[];
  options: GenerateOptions;
  /** Text echoed before the completion (completions' echo). */
  echo: string;
}

export interface Plan {
  kind: 'completion' | 'chat';
  choices: ChoicePlan[];
  /** Prompt tokens, per prompt. */
  promptTokens: number[];
  stream: boolean;
  includeUsage: boolean;
  /** Log-probs asked for: top-n (0: only the chosen token's); null: none. */
  logprobs: number | null;
}

export interface PlanLimits {
  maxPromptTokens: number;
}

function unsupported(param: string, what: string): OpenAIError {
  return badRequest(`${param} ${what} is not supported by this server`, param, 'unsupported_parameter');
}

/** Sampling, stop and length options common to both endpoints. */
function generateOptions(b: CommonBody, maxTokens: number | null | undefined): GenerateOptions {
  const o: GenerateOptions = { temperature: b.temperature ?? 1 };
  if (maxTokens != null) o.maxTokens = maxTokens;
  if (b.top_p != null) o.topP = b.top_p;
  if (b.top_k != null) o.topK = b.top_k === -1 ? 0 : b.top_k;
  if (b.min_p != null) o.minP = b.min_p;
  if (b.repetition_penalty != null) o.repetitionPenalty = b.repetition_penalty;
  if (b.presence_penalty != null) o.presencePenalty = b.presence_penalty;
  if (b.frequency_penalty != null) o.frequencyPenalty = b.frequency_penalty;
  if (b.seed != null) o.seed = b.seed;
  if (b.ignore_eos) o.ignoreEos = true;
  if (b.stop != null) o.stop = typeof b.stop === 'string' ? [b.stop] : b.stop;
  if (b.logit_bias != null && Object.keys(b.logit_bias).length > 0) throw unsupported('logit_bias', '(a non-empty map)');
  return o;
}

function checkPrompt(ids: number[], model: ServedModel, limits: PlanLimits, param: string): void {
  if (ids.length > limits.maxPromptTokens)
    throw badRequest(`the prompt has ${ids.length} tokens; this server takes at most ${limits.maxPromptTokens} (shorten the prompt)`, param, 'context_length_exceeded');
  if (ids.length >= model.maxModelLen)
    throw badRequest(`the prompt has ${ids.length} tokens; the model's context is ${model.maxModelLen} tokens with room for at least one new token`, param, 'context_length_exceeded');
}

/** n choices per prompt, choice i of a seeded request drawing with seed + i (distinct, reproducible). */
function expand(prompts: { ids: number[]; echo: string }[], n: number, options: GenerateOptions): ChoicePlan[] {
  const out: ChoicePlan[] = [];
  prompts.forEach((p, pi) => {
    for (let j = 0; j < n; j++) {
      const o = { ...options };
      if (o.seed !== undefined) o.seed = o.seed + j;
      out.push({ index: pi * n + j, prompt: pi, ids: p.ids, options: o, echo: p.echo });
    }
  });
  return out;
}

/** The plan of a POST /v1/completions body. */
export function completionPlan(b: CompletionBody, model: ServedModel, limits: PlanLimits): Plan {
  if (b.suffix) throw unsupported('suffix', '(insertion)');
  const n = b.n ?? 1;
  if (b.best_of != null && b.best_of !== n) throw unsupported('best_of', `other than n (${b.best_of} != ${n})`);
  if (b.echo && b.logprobs != null) throw unsupported('logprobs', 'with echo (log-probs of prompt tokens)');
  const raw = b.prompt;
  // string | string[] | number[] | number[][]
  const list: (string | number[])[] = typeof raw === 'string' ? [raw] : raw.length > 0 && typeof raw[0] === 'number' ? [raw as number[]] : (raw as (string | number[])[]);
  const prompts = list.map((p) => {
    // Text gets BOS, as the engine encodes text prompts; token ids are taken as they are.
    const ids = typeof p === 'string' ? Array.from(model.tokenizer.encode(p, { bos: true })) : p;
    checkPrompt(ids, model, limits, 'prompt');
    const echo = b.echo ? (typeof p === 'string' ? p : model.tokenizer.decode(p)) : '';
    return { ids, echo };
  });
  // OpenAI's default of 16 new tokens, less where the context leaves less.
  const longest = Math.max(...prompts.map((p) => p.ids.length));
  const maxTokens = b.max_tokens ?? Math.min(16, model.maxModelLen - longest);
  const options = generateOptions(b, maxTokens);
  if (b.logprobs != null) options.logprobs = b.logprobs;
  return {
    kind: 'completion', choices: expand(prompts, n, options), promptTokens: prompts.map((p) => p.ids.length),
    stream: b.stream ?? false, includeUsage: b.stream_options?.include_usage ?? false, logprobs: b.logprobs ?? null,
  };
}

function messageText(m: ChatMessageBody, i: number): string {
  if (m.content == null) return '';
  if (typeof m.content === 'string') return m.content;
  return m.content.map((part, k) => {
    if (part.type !== 'text' || typeof part.text !== 'string') throw unsupported(`messages[${i}].content[${k}].type`, `"${part.type}" (only text parts)`);
    return part.text;
  }).join('');
}

/** The conversation of a chat body in the roles the chat renderers know. */
export function chatMessages(messages: readonly ChatMessageBody[]): ServeMessage[] {
  return messages.map((m, i) => {
    if (m.role === 'tool' || m.role === 'function') throw unsupported(`messages[${i}].role`, `"${m.role}" (tool calls)`);
    return { role: m.role === 'developer' ? 'system' : m.role, content: messageText(m, i) };
  });
}

/** Renders a conversation; the template's refusals (role order, ...) are the client's 400. */
export function renderChat(model: ServedModel, messages: readonly ChatMessageBody[]): number[] {
  const msgs = chatMessages(messages);
  try {
    return model.chat(msgs);
  } catch (err) {
    if (err instanceof PatentGPTError) throw badRequest(err.message, 'messages');
    throw err;
  }
}

/** The plan of a POST /v1/chat/completions body. */
export function chatPlan(b: ChatBody, model: ServedModel, limits: PlanLimits): Plan {
  if (b.tools?.length) throw unsupported('tools', '(tool calling)');
  if (b.functions?.length) throw unsupported('functions', '(function calling)');
  if (b.tool_choice != null && b.tool_choice !== 'none') throw unsupported('tool_choice', '(tool calling)');
  if (b.response_format != null && b.response_format.type !== 'text') throw unsupported('response_format', `of type ${JSON.stringify(b.response_format.type)} (only "text")`);
  if (b.top_logprobs != null && !b.logprobs) throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs');
  const ids = renderChat(model, b.messages);
  checkPrompt(ids, model, limits, 'messages');
  const options = generateOptions(b, b.max_completion_tokens ?? b.max_tokens);
  const logprobs = b.logprobs ? (b.top_logprobs ?? 0) : null;
  if (logprobs !== null) options.logprobs = logprobs;
  return {
    kind: 'chat', choices: expand([{ ids, echo: '' }], b.n ?? 1, options), promptTokens: [ids.length],
    stream: b.stream ?? false, includeUsage: b.stream_options?.include_usage ?? false, logprobs,
  };
}

// ---- responses ----

export function responseId(kind: Plan['kind']): string {
  return `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
}

/** The text and UTF-8 bytes of one token, as log-prob entries show it. */
export function tokenView(tok: ServeTokenizer, id: number): { text: string; bytes: number[] } {
  if (tok instanceof SentencePieceTokenizer) {
    const piece = tok.idToPiece(id);
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (byte) {
      const v = parseInt(byte[1]!, 16);
      return { text: v < 128 ? String.fromCharCode(v) : piece, bytes: [v] };
    }
    const text = piece.replace(/\u2581/g, ' ');
    return { text, bytes: Array.from(Buffer.from(text, 'utf8')) };
  }
  if (id < 256) return { text: Buffer.from([id]).toString('latin1'), bytes: [id] };
  const text = tok.idToPiece(id);
  return { text, bytes: Array.from(Buffer.from(text, 'utf8')) };
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[] | null;
  text_offset: number[];
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** Completions' log-prob object of some tokens; offsets continue from `offset`. */
export function completionLogprobs(tok: ServeTokenizer, lps: readonly TokenLogprob[], topN: number, offset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: topN > 0 ? [] : null, text_offset: [] };
  let at = offset;
  for (const lp of lps) {
    const t = tokenView(tok, lp.token).text;
    out.tokens.push(t);
    out.token_logprobs.push(lp.logprob);
    out.text_offset.push(at);
    at += t.length;
    if (out.top_logprobs) out.top_logprobs.push(Object.fromEntries((lp.top ?? []).map((e) => [tokenView(tok, e.token).text, e.logprob])));
  }
  return out;
}

/** Chat's log-prob entries of some tokens. */
export function chatLogprobs(tok: ServeTokenizer, lps: readonly TokenLogprob[]): ChatTokenLogprob[] {
  return lps.map((lp) => {
    const v = tokenView(tok, lp.token);
    return {
      token: v.text, logprob: lp.logprob, bytes: v.bytes,
      top_logprobs: (lp.top ?? []).map((e) => {
        const w = tokenView(tok, e.token);
        return { token: w.text, logprob: e.logprob, bytes: w.bytes };
      }),
    };
  });
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(plan: Plan, completionTokens: number): Usage {
  const prompt = plan.promptTokens.reduce((a, b) => a + b, 0);
  return { prompt_tokens: prompt, completion_tokens: completionTokens, total_tokens: prompt + completionTokens };
}

/** What a finished choice gathered. */
export interface ChoiceResult {
  text: string;
  tokens: number;
  finishReason: FinishReason;
  logprobs: TokenLogprob[];
}
