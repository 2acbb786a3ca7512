// createServer: an OpenAI-compatible HTTP server (fastify) over an engine or a model folder.
//
//   request ─► auth (Bearer) ─► JSON schema (ajv, no coercion) ─► plan (openai.ts: prompt ids,
//   engine options, 400s) ─► admission (queue.ts: a slot, a place in the bounded queue, or 429)
//   ─► engine.generate per choice (one AbortSignal: client gone, timeout) ─► JSON or SSE
//
// A request's signal aborts when its client disconnects or its time runs out: the engine cancels
// its sequences at once and frees their KV blocks, and a waiting request leaves the queue.
// Streams answer headers only once every choice has its first token, so a request the engine
// refuses (context, cache) still gets an HTTP error, not a broken stream; SSE writes wait for the
// socket to drain (a client that stops reading holds its slot until the timeout, nothing more).
// The engine is the caller's when passed in; a model folder's ThreadedEngine closes with the
// server (fastify's close(): in-flight requests finish first, new ones get 503).
import { createHash, timingSafeEqual } from 'node:crypto';
import { basename, resolve } from 'node:path';
import type { ServerResponse } from 'node:http';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { PatentGPTError } from '../errors.js';
import type { EngineOptions, GenerationDelta } from '../infer/engine.js';
import type { ChatTemplate } from '../tokenizer/index.js';
import { ServerMetrics } from './metrics.js';
import { chatRenderer, openModelFolder, type ServeEngine, type ServeTokenizer, type ServedModel } from './model.js';
import {
  OpenAIError, badRequest, chatLogprobs, chatPlan, completionLogprobs, completionPlan, engineError, renderChat, responseId, usageOf,
  type ChoicePlan, type ChoiceResult, type Plan,
} from './openai.js';
import { AdmissionQueue, type Release } from './queue.js';
import {
  chatSchema, completionSchema, detokenizeSchema, tokenizeSchema,
  type ChatBody, type CompletionBody, type DetokenizeBody, type TokenizeBody,
} from './schemas.js';

export interface ServerOptions {
  /** A model folder (savePretrained's): loaded into a ThreadedEngine with its tokenizer and chat template. */
  model?: string;
  /** Or an engine of the caller's (Engine or ThreadedEngine), with `tokenizer`; the server never closes it. */
  engine?: ServeEngine;
  /** The engine's tokenizer (with `engine`; a folder's is read from it). */
  tokenizer?: ServeTokenizer;
  /** A Hugging Face chat template for `engine` (default: LLaMA-2's format). */
  chatTemplate?: ChatTemplate | null;
  /** The context; default: the engine's maxModelLen, or the folder's config. */
  maxModelLen?: number;
  /** Engine settings for a model folder (kvCacheBytes, maxNumSeqs, ...). */
  engineOptions?: Omit<EngineOptions, 'tokenizer'>;
  /** The id clients send as "model" (default: the folder's name, else "patentgpt"). */
  modelName?: string;
  /** Bearer keys accepted on /v1, /tokenize and /detokenize; required when host is not loopback. */
  apiKey?: string | readonly string[];
  /** Where the caller will listen (default 127.0.0.1); decides whether a key is required. */
  host?: string;
  /** Requests in the engine at once (default 64). */
  maxConcurrency?: number;
  /** Requests waiting beyond those; more are answered 429 (default 256). */
  queueSize?: number;
  /** Largest request body in bytes (default 1 MiB); larger is answered 413. */
  bodyLimit?: number;
  /** Longest prompt in tokens (default: the context less one). */
  maxPromptTokens?: number;
  /** A generation request's time limit, queue wait included, in ms (default 600000; 0: none). */
  requestTimeoutMs?: number;
  /**
   * close() waits this long (ms) for in-flight generations before cutting their connections
   * (default 30000); then it closes every connection, idle keep-alive ones included.
   */
  drainTimeoutMs?: number;
  /** fastify's logger option (default off). */
  logger?: boolean;
}

/** Why a request ended without an answer: its client went away. */
class ClientGone extends Error {}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || host === '::ffff:127.0.0.1';
}

const sha = (s: string): Buffer => createHash('sha256').update(s).digest();

function checkPositive(v: number | undefined, name: string, min: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min))
    throw new PatentGPTError('E_ARGUMENT', `createServer: ${name} must be an integer >= ${min}, got ${v}`);
}

async function servedModel(opts: ServerOptions): Promise<ServedModel> {
  if ((opts.model === undefined) === (opts.engine === undefined))
    throw new PatentGPTError('E_ARGUMENT', 'createServer: pass either model (a model folder) or engine (with tokenizer)');
  if (opts.model !== undefined) return openModelFolder(opts.model, { ...opts.engineOptions, ...(opts.maxModelLen ? { maxModelLen: opts.maxModelLen } : {}) });
  if (!opts.tokenizer) throw new PatentGPTError('E_ARGUMENT', 'createServer: an engine needs its tokenizer (createServer({ engine, tokenizer }))');
  const maxModelLen = opts.maxModelLen ?? opts.engine!.maxModelLen;
  if (maxModelLen === undefined) throw new PatentGPTError('E_ARGUMENT', "createServer: give maxModelLen (this engine does not tell its context)");
  return { engine: opts.engine!, tokenizer: opts.tokenizer, ...chatRenderer(opts.tokenizer, opts.chatTemplate ?? null), maxModelLen, close: async () => undefined };
}

/** An OpenAI-compatible server; call listen() on it (and close() to drain and stop). */
export async function createServer(opts: ServerOptions): Promise<FastifyInstance> {
  const host = opts.host ?? '127.0.0.1';
  const keys = (typeof opts.apiKey === 'string' ? [opts.apiKey] : [...(opts.apiKey ?? [])]).filter((k) => k.length > 0);
  if (!isLoopback(host) && keys.length === 0)
    throw new PatentGPTError('E_ARGUMENT', `createServer: host ${host} is not loopback, so an API key is required (apiKey, or --api-key / PATENTGPT_API_KEY)`);
  for (const [v, name, min] of [[opts.maxConcurrency, 'maxConcurrency', 1], [opts.queueSize, 'queueSize', 0], [opts.bodyLimit, 'bodyLimit', 1],
    [opts.maxPromptTokens, 'maxPromptTokens', 1], [opts.requestTimeoutMs, 'requestTimeoutMs', 0], [opts.drainTimeoutMs, 'drainTimeoutMs', 0]] as const) checkPositive(v, name, min);
  const queue = new AdmissionQueue(opts.maxConcurrency ?? 64, opts.queueSize ?? 256);
  const served = await servedModel(opts);
  const modelName = opts.modelName ?? (opts.model !== undefined ? basename(resolve(opts.model)) : 'patentgpt');
  const limits = { maxPromptTokens: Math.min(opts.maxPromptTokens ?? Infinity, served.maxModelLen - 1) };
  const timeoutMs = opts.requestTimeoutMs ?? 600_000;
  const metrics = new ServerMetrics(() => served.engine.stats(), queue);
  const created = Math.floor(Date.now() / 1000);
  const keyHashes = keys.map(sha);
  let closing = false;
  // Generations in flight, and who waits for them to end (close()).
  let active = 0;
  let onDrained: (() => void) | null = null;

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 2 ** 20,
    // Wrong types are errors, never coerced; bodies are validated as sent.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  app.removeContentTypeParser('text/plain'); // the API takes JSON only: anything else is 415

  // ---- errors in OpenAI's shape ----
  const counted = new WeakSet<FastifyRequest>();
  app.addHook('onResponse', async (req, reply) => {
    if (!counted.has(req)) metrics.requests.inc({ endpoint: req.routeOptions.url ?? 'unknown', status: String(reply.statusCode) });
  });
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const e = toOpenAIError(err);
    if (e.status >= 500) req.log.error(err);
    void reply.code(e.status).headers(e.headers).send(e.body());
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new OpenAIError(404, `no route ${req.method} ${req.url.split('?')[0]}; this server has /v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize, /health, /metrics`, 'invalid_request_error', null, 'not_found');
    void reply.code(404).send(e.body());
  });

  // ---- Bearer keys ----
  // Without keys the API answers only connections that arrived on a loopback address, whatever
  // host listen() was given (a server made for 127.0.0.1 and then bound to 0.0.0.0 stays closed).
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0]!;
    if (!(path.startsWith('/v1/') || path === '/tokenize' || path === '/detokenize')) return;
    if (keyHashes.length === 0) {
      if (!isLoopback(req.socket.localAddress ?? '127.0.0.1'))
        throw new OpenAIError(403, 'this server has no API key, so it answers only on loopback; start it with an API key (apiKey, --api-key or PATENTGPT_API_KEY) to serve other hosts', 'invalid_request_error', null, 'api_key_required');
      return;
    }
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    const given = m ? sha(m[1]!.trim()) : null;
    if (!given || !keyHashes.some((k) => timingSafeEqual(k, given)))
      throw new OpenAIError(401, m ? 'Incorrect API key provided.' : 'Missing API key: send "Authorization: Bearer <key>".', 'invalid_request_error', null, 'invalid_api_key');
  });

  const checkModel = (name: string | undefined): void => {
    if (name !== undefined && name !== modelName)
      throw new OpenAIError(404, `The model \`${name}\` does not exist; this server serves "${modelName}" (GET /v1/models)`, 'invalid_request_error', 'model', 'model_not_found');
  };

  // ---- routes ----
  // 200 while the engine answers (a ThreadedEngine whose worker died does not), 503 when draining.
  app.get('/health', async (_req, reply) => {
    if (closing) return reply.code(503).send({ status: 'closing' });
    try {
      await served.engine.stats();
    } catch (err) {
      return reply.code(503).send({ status: 'engine unavailable', message: (err as Error).message });
    }
    return { status: 'ok' };
  });

  app.get('/metrics', async (_req, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  const modelCard = () => ({ id: modelName, object: 'model', created, owned_by: 'patentgpt', max_model_len: served.maxModelLen });
  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard()] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req) => {
    checkModel(req.params.id);
    return modelCard();
  });

  app.post<{ Body: TokenizeBody }>('/tokenize', { schema: { body: tokenizeSchema } }, async (req) => {
    const b = req.body;
    checkModel(b.model);
    const ids = b.messages ? renderChat(served, b.messages) : Array.from(served.tokenizer.encode(b.prompt!, { bos: b.add_special_tokens ?? true }));
    return { count: ids.length, max_model_len: served.maxModelLen, tokens: ids };
  });

  app.post<{ Body: DetokenizeBody }>('/detokenize', { schema: { body: detokenizeSchema } }, async (req) => {
    checkModel(req.body.model);
    return { prompt: served.tokenizer.decode(req.body.tokens) };
  });

  const generation = (plan: (b: never) => Plan) => async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const body = req.body as { model: string };
    checkModel(body.model);
    const p = plan(body as never);
    counted.add(req);
    reply.hijack(); // from here the response is written by hand: JSON or SSE
    const status = await serveGeneration(p, req, reply.raw, () => reply.elapsedTime);
    metrics.requests.inc({ endpoint: req.routeOptions.url ?? 'unknown', status: String(status) });
  };
  app.post('/v1/completions', { schema: { body: completionSchema } }, generation((b: CompletionBody) => completionPlan(b, served, limits)));
  app.post('/v1/chat/completions', { schema: { body: chatSchema } }, generation((b: ChatBody) => chatPlan(b, served, limits)));

  // Draining: new requests get 503 (fastify), generations in flight finish, then every connection
  // is closed, idle keep-alive ones included (a client may keep one open for minutes), at the
  // latest after drainTimeoutMs (cut streams abort their generations like a client hanging up).
  app.addHook('preClose', async () => {
    closing = true;
    const drained = active === 0 ? Promise.resolve() : new Promise<void>((r) => (onDrained = r));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, opts.drainTimeoutMs ?? 30_000)));
    void Promise.race([drained, deadline]).then(() => {
      clearTimeout(timer);
      app.server.closeAllConnections();
    });
  });
  app.addHook('onClose', async () => {
    await served.close();
  });

  /** Runs a plan and writes its answer; returns the status for the metrics (499: client gone). */
  async function serveGeneration(plan: Plan, req: FastifyRequest, raw: ServerResponse, elapsedMs: () => number): Promise<number> {
    active++;
    const ac = new AbortController();
    const onClose = (): void => {
      if (!raw.writableEnded) ac.abort(new ClientGone('the client closed the connection'));
    };
    raw.on('close', onClose);
    const timer = timeoutMs > 0 ? setTimeout(() => ac.abort(new OpenAIError(504, `the request took longer than ${timeoutMs} ms (requestTimeoutMs)`, 'timeout_error', null, 'request_timeout')), timeoutMs) : null;
    let release: Release | null = null;
    const runs: { plan: ChoicePlan; it: AsyncIterableIterator<GenerationDelta> | null; res: ChoiceResult; last: number; sentRole: boolean }[] = [];
    let streaming = false;
    try {
      const slot = queue.acquire(ac.signal);
      if (slot === null)
        throw new OpenAIError(429, `the server is busy (${queue.running} requests running, ${queue.waiting} waiting); retry shortly`, 'rate_limit_error', null, 'rate_limit_exceeded', { 'retry-after': '1' });
      release = await slot;
      metrics.promptTokens.inc(plan.promptTokens.reduce((a, b) => a + b, 0));
      for (const c of plan.choices) {
        runs.push({ plan: c, it: null, res: { text: '', tokens: 0, finishReason: 'length', logprobs: [] }, last: 0, sentRole: false });
        runs[runs.length - 1]!.it = served.engine.generate(c.ids, { ...c.options, signal: ac.signal });
      }
      const id = responseId(plan.kind);
      const now = Math.floor(Date.now() / 1000);
      const chunk = (r: (typeof runs)[number], d: GenerationDelta, text: string): Record<string, unknown> => {
        const lp = d.logprobs && plan.logprobs !== null
          ? plan.kind === 'chat' ? { content: chatLogprobs(served.tokenizer, d.logprobs) } : completionLogprobs(served.tokenizer, d.logprobs, plan.logprobs, r.res.text.length - text.length)
          : null;
        const choice = plan.kind === 'chat'
          ? { index: r.plan.index, delta: text ? { content: text } : {}, logprobs: lp, finish_reason: d.finishReason }
          : { index: r.plan.index, text, logprobs: lp, finish_reason: d.finishReason };
        return { id, object: plan.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created: now, model: modelName, choices: [choice] };
      };
      const onDelta = async (r: (typeof runs)[number], d: GenerationDelta): Promise<void> => {
        const t = performance.now();
        if (d.tokens.length > 0) {
          if (r.res.tokens === 0) metrics.ttft.observe(elapsedMs() / 1000);
          else metrics.interToken.observe((t - r.last) / 1000 / d.tokens.length);
          r.last = t;
          metrics.generationTokens.inc(d.tokens.length);
        }
        const text = (r.res.tokens === 0 ? r.plan.echo : '') + d.text;
        r.res.tokens += d.tokens.length;
        r.res.text += text;
        if (d.logprobs) r.res.logprobs.push(...d.logprobs);
        if (d.finishReason) r.res.finishReason = d.finishReason;
        if (!streaming) return;
        if (plan.kind === 'chat' && !r.sentRole) {
          r.sentRole = true;
          await write(raw, sse({ id, object: 'chat.completion.chunk', created: now, model: modelName, choices: [{ index: r.plan.index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] }), ac.signal);
        }
        if (text !== '' || d.finishReason !== null || (d.logprobs && plan.logprobs !== null)) await write(raw, sse(chunk(r, d, text)), ac.signal);
      };
      // Every choice's first delta before any header: the engine's refusals are still HTTP errors.
      const firsts = await Promise.all(runs.map((r) => r.it!.next()));
      if (plan.stream) {
        streaming = true;
        raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
      }
      const pull = async (r: (typeof runs)[number], first: IteratorResult<GenerationDelta>): Promise<void> => {
        for (let x = first; !x.done; x = await r.it!.next()) await onDelta(r, x.value);
      };
      await Promise.all(runs.map((r, i) => pull(r, firsts[i]!)));
      const usage = usageOf(plan, runs.reduce((a, r) => a + r.res.tokens, 0));
      if (streaming) {
        if (plan.includeUsage)
          await write(raw, sse({ id, object: plan.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion', created: now, model: modelName, choices: [], usage }), ac.signal);
        raw.end('data: [DONE]\n\n');
        return 200;
      }
      const choices = runs.map((r) => {
        const lp = plan.logprobs === null ? null
          : plan.kind === 'chat' ? { content: chatLogprobs(served.tokenizer, r.res.logprobs) } : completionLogprobs(served.tokenizer, r.res.logprobs, plan.logprobs, r.plan.echo.length);
        return plan.kind === 'chat'
          ? { index: r.plan.index, message: { role: 'assistant', content: r.res.text }, logprobs: lp, finish_reason: r.res.finishReason }
          : { index: r.plan.index, text: r.res.text, logprobs: lp, finish_reason: r.res.finishReason };
      });
      sendJson(raw, 200, { id, object: plan.kind === 'chat' ? 'chat.completion' : 'text_completion', created: now, model: modelName, choices, usage });
      return 200;
    } catch (err) {
      if (!ac.signal.aborted) ac.abort(err); // the other choices stop too
      const reason: unknown = ac.signal.reason;
      if (reason instanceof ClientGone || raw.destroyed) return 499;
      const e = engineError(reason instanceof OpenAIError ? reason : err);
      if (e.status >= 500) req.log.error(err);
      if (!raw.headersSent) sendJson(raw, e.status, e.body(), e.headers);
      else {
        // Mid-stream: an error event, then the end (OpenAI's clients raise it).
        raw.write(sse(e.body()));
        if (raw.writableNeedDrain) raw.destroy(); // a client that stopped reading gets no more
        else raw.end('data: [DONE]\n\n');
      }
      return e.status;
    } finally {
      if (timer) clearTimeout(timer);
      raw.off('close', onClose);
      for (const r of runs) if (r.it) void r.it.return?.();
      release?.();
      if (--active === 0) onDrained?.();
    }
  }

  return app;
}

function sse(obj: unknown): string {
  return `data: ${JSON.stringify(obj)}\n\n`;
}

function sendJson(raw: ServerResponse, status: number, obj: unknown, headers: Record<string, string> = {}): void {
  if (raw.destroyed || raw.writableEnded) return;
  raw.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  raw.end(JSON.stringify(obj));
}

/** Writes to the socket, waiting for it to drain when its buffer is full. */
async function write(raw: ServerResponse, s: string, signal: AbortSignal): Promise<void> {
  if (raw.destroyed) throw signal.reason ?? new ClientGone('the client closed the connection');
  if (raw.write(s)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      cleanup();
      resolve();
    };
    const fail = (): void => {
      cleanup();
      reject(signal.reason ?? new ClientGone('the client closed the connection'));
    };
    const cleanup = (): void => {
      raw.off('drain', done);
      raw.off('close', fail);
      signal.removeEventListener('abort', fail);
    };
    raw.on('drain', done);
    raw.on('close', fail);
    signal.addEventListener('abort', fail);
  });
}

/** fastify's and the engine's errors as OpenAI's. */
function toOpenAIError(err: FastifyError): OpenAIError {
  if (err instanceof OpenAIError) return err;
  if (err.validation && err.validation.length > 0) {
    const v = err.validation[0]!;
    const missing = (v.params as { missingProperty?: string }).missingProperty;
    const path = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
    if (missing) return badRequest(`Missing required parameter: '${path ? `${path}.` : ''}${missing}'.`, `${path ? `${path}.` : ''}${missing}`, 'missing_required_parameter');
    const param = path || null;
    return badRequest(`Invalid value for '${param ?? 'body'}': ${v.message ?? 'invalid'}${v.keyword === 'anyOf' ? ' (wrong type)' : ''}.`, param, 'invalid_value');
  }
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new OpenAIError(413, `${err.message}; the limit is set by bodyLimit (--body-limit)`, 'invalid_request_error', null, 'request_too_large');
  if (err instanceof PatentGPTError) return engineError(err);
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const message = err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? `We could not parse the JSON body of your request: ${err.message}` : err.message;
    return new OpenAIError(status, message, 'invalid_request_error', null, err.code ?? null);
  }
  return new OpenAIError(500, `internal error: ${err.message}`, 'server_error');
}
