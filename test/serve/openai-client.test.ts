// The server through the official openai npm client on loopback, over a tiny model folder:
// completions and chat, streaming and not, stop strings, n > 1, log-probs, penalties, usage; greedy
// output through HTTP equals the in-process Engine's; errors come back as OpenAI's JSON.
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine, type TokenLogprob } from '../../src/infer/index.js';
import { chatPromptIds } from '../../src/infer/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { MODEL_NAME, metric, settled, startServer, tinyFolder } from './fixture.js';

let folder: Awaited<ReturnType<typeof tinyFolder>>;
let app: FastifyInstance;
let url: string;
let client: OpenAI;
let engine: Engine;
const tok = new ByteTokenizer();

beforeAll(async () => {
  folder = await tinyFolder();
  ({ app, url } = await startServer(folder.dir));
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
  engine = await Engine.fromPretrained(folder.dir, { kvCacheBytes: 2 ** 22, tokenizer: tok });
}, 60_000);

afterAll(async () => {
  await app?.close();
  engine?.close();
  folder?.cleanup();
});

const PROMPT = 'Claim 1. A method for';

describe('serve: the openai client', () => {
  it('completions: greedy text and token count equal Engine.generate on the same prompt; usage counts', async () => {
    const want = await engine.complete(PROMPT, { maxTokens: 24, temperature: 0 });
    const got = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 24, temperature: 0 });
    expect(got.object).toBe('text_completion');
    expect(got.model).toBe(MODEL_NAME);
    expect(got.choices).toHaveLength(1);
    expect(got.choices[0]!.text).toBe(want.text);
    expect(got.choices[0]!.finish_reason).toBe(want.finishReason);
    expect(got.usage).toEqual({ prompt_tokens: PROMPT.length + 1, completion_tokens: want.tokens.length, total_tokens: PROMPT.length + 1 + want.tokens.length });
  });

  it('completions streamed: chunks concatenate to the greedy text; include_usage adds a usage chunk before [DONE]', async () => {
    const want = await engine.complete(PROMPT, { maxTokens: 30, temperature: 0, ignoreEos: true });
    const stream = await client.completions.create({
      model: MODEL_NAME, prompt: PROMPT, max_tokens: 30, temperature: 0, stream: true, stream_options: { include_usage: true }, ignore_eos: true,
    } as OpenAI.CompletionCreateParamsStreaming);
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined = null;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      if (c.choices.length) {
        text += c.choices[0]!.text;
        finish = c.choices[0]!.finish_reason ?? finish;
      }
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(want.text);
    expect(finish).toBe('length');
    expect(chunks).toBeGreaterThan(3);
    expect(usage).toEqual({ prompt_tokens: PROMPT.length + 1, completion_tokens: 30, total_tokens: PROMPT.length + 1 + 30 });
  });

  it('the raw SSE stream ends with data: [DONE]', async () => {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL_NAME, prompt: 'x', max_tokens: 3, stream: true, temperature: 0 }),
    });
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = await r.text();
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(body.split('\n\n').filter((e) => e.startsWith('data: {')).length).toBeGreaterThanOrEqual(1);
  });

  it('chat: the folder\'s chat format (LLaMA-2 [INST]) renders the prompt; streamed and whole answers equal the engine\'s', async () => {
    const messages = [{ role: 'system' as const, content: 'be brief' }, { role: 'user' as const, content: 'What is a patent claim?' }];
    const ids = chatPromptIds(tok, messages);
    const want = await engine.complete(ids, { maxTokens: 20, temperature: 0 });
    const got = await client.chat.completions.create({ model: MODEL_NAME, messages, max_tokens: 20, temperature: 0 });
    expect(got.object).toBe('chat.completion');
    expect(got.choices[0]!.message.role).toBe('assistant');
    expect(got.choices[0]!.message.content).toBe(want.text);
    expect(got.usage!.prompt_tokens).toBe(ids.length);
    expect(got.usage!.completion_tokens).toBe(want.tokens.length);
    const stream = await client.chat.completions.create({ model: MODEL_NAME, messages, max_completion_tokens: 20, temperature: 0, stream: true });
    let text = '';
    let role: string | undefined;
    for await (const c of stream) {
      role ??= c.choices[0]?.delta.role;
      text += c.choices[0]?.delta.content ?? '';
    }
    expect(role).toBe('assistant');
    expect(text).toBe(want.text);
  });

  it('stop strings end the text before the stop string (whole and streamed)', async () => {
    const full = (await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 30, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming)).choices[0]!.text;
    const stop = full.slice(10, 12);
    const cut = full.slice(0, full.indexOf(stop));
    const got = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 30, temperature: 0, stop, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(got.choices[0]!.text).toBe(cut);
    expect(got.choices[0]!.finish_reason).toBe('stop');
    const stream = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 30, temperature: 0, stop: [stop, 'zzzz'], stream: true, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming);
    let text = '';
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    expect(text).toBe(cut);
  });

  it('n > 1: n choices indexed 0..n-1; seeded sampling is reproducible and differs across choices; streamed n too', async () => {
    const ask = () => client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 12, temperature: 1.5, seed: 42, n: 3, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const a = await ask();
    const b = await ask();
    expect(a.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    expect(a.choices.map((c) => c.text)).toEqual(b.choices.map((c) => c.text));
    expect(new Set(a.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    expect(a.usage!.completion_tokens).toBe(36);
    expect(a.usage!.prompt_tokens).toBe(PROMPT.length + 1);
    const stream = await client.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, n: 2, stream: true, temperature: 0 });
    const texts = ['', ''];
    for await (const c of stream) for (const ch of c.choices) texts[ch.index] += ch.delta.content ?? '';
    expect(texts[0]).toBe(texts[1]); // greedy: both choices the same
    expect(texts[0]!.length).toBeGreaterThan(0);
  });

  it('log-probs: completions (logprobs: n) and chat (logprobs + top_logprobs) carry the engine\'s values', async () => {
    const want = await engine.generate(PROMPT, { maxTokens: 5, temperature: 0, ignoreEos: true, logprobs: 2 });
    const lps: TokenLogprob[] = [];
    for await (const d of want) lps.push(...(d.logprobs ?? []));
    const got = await client.completions.create({ model: MODEL_NAME, prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 2, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const lp = got.choices[0]!.logprobs!;
    expect(lp.token_logprobs).toHaveLength(5);
    lp.token_logprobs!.forEach((v, i) => expect(v).toBeCloseTo(lps[i]!.logprob, 5));
    expect(Object.keys(lp.top_logprobs![0]!)).toHaveLength(2);
    const chat = await client.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = chat.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(chat.usage!.completion_tokens);
    expect(content[0]!.top_logprobs).toHaveLength(3);
    expect(content[0]!.logprob).toBeLessThanOrEqual(0);
    expect(content[0]!.top_logprobs[0]!.logprob).toBeGreaterThanOrEqual(content[0]!.top_logprobs[1]!.logprob);
  });

  it('presence and frequency penalties reach the sampler (a strong penalty changes a greedy output)', async () => {
    const plain = await client.completions.create({ model: MODEL_NAME, prompt: 'aaaa', max_tokens: 40, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const want = await engine.complete('aaaa', { maxTokens: 40, temperature: 0, ignoreEos: true, frequencyPenalty: 2, presencePenalty: 2 });
    const pen = await client.completions.create({ model: MODEL_NAME, prompt: 'aaaa', max_tokens: 40, temperature: 0, frequency_penalty: 2, presence_penalty: 2, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(pen.choices[0]!.text).toBe(want.text);
    expect(pen.choices[0]!.text).not.toBe(plain.choices[0]!.text);
  });

  it('GET /v1/models lists the model; /tokenize and /detokenize round-trip', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL_NAME]);
    const t = await (await fetch(`${url}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'héllo' }) })).json() as { tokens: number[]; count: number };
    expect(t.tokens).toEqual([256, ...Buffer.from('héllo')]);
    expect(t.count).toBe(t.tokens.length);
    const d = await (await fetch(`${url}/detokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tokens: t.tokens }) })).json() as { prompt: string };
    expect(d.prompt).toBe('héllo');
    const h = await fetch(`${url}/health`);
    expect(h.status).toBe(200);
  });

  it('errors come back as OpenAI JSON the client raises: unknown model 404, bad values 400 naming the param, unsupported fields 400', async () => {
    const err = async (p: Promise<unknown>) => (await p.then(() => null, (e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    const unknown = await err(client.completions.create({ model: 'gpt-4', prompt: 'x' }));
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
    expect(unknown.code).toBe('model_not_found');
    expect(unknown.param).toBe('model');
    const neg = await err(client.completions.create({ model: MODEL_NAME, prompt: 'x', max_tokens: -1 }));
    expect(neg).toBeInstanceOf(OpenAI.BadRequestError);
    expect(neg.param).toBe('max_tokens');
    expect(neg.type).toBe('invalid_request_error');
    const topp = await err(client.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }], top_p: 1.5 }));
    expect(topp.status).toBe(400);
    expect(topp.param).toBe('top_p');
    const tools = await err(client.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }] }));
    expect(tools.status).toBe(400);
    expect(tools.code).toBe('unsupported_parameter');
    const long = await err(client.completions.create({ model: MODEL_NAME, prompt: 'x'.repeat(300) }));
    expect(long.status).toBe(400);
    expect(long.code).toBe('context_length_exceeded');
    const tooMany = await err(client.completions.create({ model: MODEL_NAME, prompt: 'x'.repeat(200), max_tokens: 100 }));
    expect(tooMany.status).toBe(400);
    expect(tooMany.message).toMatch(/exceed the context/);
    const roles = await err(client.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'assistant', content: 'x' }] }));
    expect(roles.status).toBe(400);
    expect(roles.param).toBe('messages');
    expect(await metric(url, 'patentgpt_kv_blocks_in_use')).toBe(0);
  });

  it('metrics count requests and tokens, and observe time to first token and inter-token latency', async () => {
    await client.completions.create({ model: MODEL_NAME, prompt: 'x', max_tokens: 5, temperature: 0, ignore_eos: true } as OpenAI.CompletionCreateParamsNonStreaming);
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(/patentgpt_requests_total\{endpoint="\/v1\/completions",status="200"\} \d+/);
    expect(text).toMatch(/patentgpt_requests_total\{endpoint="\/v1\/completions",status="404"\} \d+/);
    expect(await metric(url, 'patentgpt_generation_tokens_total')).toBeGreaterThan(5);
    expect(await metric(url, 'patentgpt_time_to_first_token_seconds_count')).toBeGreaterThan(0);
    expect(await metric(url, 'patentgpt_inter_token_latency_seconds_count')).toBeGreaterThan(0);
    expect(await metric(url, 'patentgpt_queue_depth')).toBe(0);
    expect(await metric(url, 'patentgpt_kv_blocks_total')).toBeGreaterThan(0);
    expect(await settled(url)).toEqual({ kv: 0, running: 0 });
  });
});
