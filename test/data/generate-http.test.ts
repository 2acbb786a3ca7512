// The OpenAI-compatible HTTP backend against a local server that injects 429s with Retry-After,
// 5xx, resets, slow answers and malformed bodies: retries, timeouts, the rate limits and the
// concurrency bound are measured on the server's side.
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerateError, OpenAIHttpGenerator, TokenBucket, retryAfterMs, type HttpGeneratorOptions } from '../../src/data/generate/index.js';
import { startMockServer, type MockServer } from './generate-mock-server.js';

let server: MockServer;
beforeAll(async () => {
  server = await startMockServer({ retryAfterSec: 0.15 });
});
afterAll(async () => {
  await server.close();
});

const user = (content: string) => ({ messages: [{ role: 'user' as const, content }] });
const gen = (o: Partial<HttpGeneratorOptions> = {}): OpenAIHttpGenerator =>
  new OpenAIHttpGenerator({ baseURL: server.url, apiKey: 'sk-test', model: 'm1', backoff: { initialMs: 20, maxMs: 100 }, ...o });
const since = (t0: number): SeenLike[] => server.seen.filter((r) => r.at >= t0);
type SeenLike = MockServer['seen'][number];

async function failure(p: Promise<unknown>): Promise<GenerateError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(GenerateError);
    return e as GenerateError;
  }
  throw new Error('expected a GenerateError');
}

describe('OpenAIHttpGenerator', () => {
  it('sends the OpenAI request shape with the Bearer key and reads text, usage and model', async () => {
    const t0 = performance.now();
    const g = gen();
    const r = await g.complete({ messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'ok hello\nlast line' }], maxTokens: 7, temperature: 0, seed: 3, stop: ['\n\n'] });
    expect(r).toEqual({ text: 'echo: last line', finishReason: 'stop', usage: { promptTokens: 10, completionTokens: 3 }, model: 'served-m1' });
    const [req] = since(t0);
    expect(req!.path).toBe('/v1/chat/completions');
    expect(req!.headers.authorization).toBe('Bearer sk-test');
    expect(req!.headers['content-type']).toBe('application/json');
    expect(req!.body).toEqual({
      model: 'm1', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'ok hello\nlast line' }],
      max_tokens: 7, temperature: 0, seed: 3, stop: ['\n\n'],
    });
    // /completions: one prompt, choices[0].text
    const c = new OpenAIHttpGenerator({ baseURL: server.url + '/', model: 'm2', api: 'completions' });
    expect((await c.complete(user('ok a\nb'))).text).toBe('echo: b');
    const last = server.seen.at(-1)!;
    expect(last.path).toBe('/v1/completions');
    expect(last.headers.authorization).toBeUndefined();
    expect(last.body).toEqual({ model: 'm2', prompt: 'ok a\nb\n\n' });
  });

  it('sends what the official openai client sends for the same calls (captured fixture)', async () => {
    const fixture = JSON.parse(fs.readFileSync(new URL('../fixtures/openai-node-requests.json', import.meta.url), 'utf8')) as {
      requests: { method: string; path: string; headers: Record<string, string>; body: Record<string, unknown> }[];
    };
    const [chat, completion] = fixture.requests;
    const t0 = performance.now();
    await gen().complete({ messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello' }], maxTokens: 7, temperature: 0, topP: 0.9, seed: 3, stop: ['\n\n'] });
    await gen({ api: 'completions', model: 'm2' }).complete({ ...user('hello'), maxTokens: 7, temperature: 0 });
    const ours = since(t0).map((s) => ({
      method: 'POST', path: s.path, headers: { authorization: s.headers.authorization, 'content-type': s.headers['content-type'], accept: s.headers.accept }, body: s.body,
    }));
    expect(ours).toEqual([chat, completion]);
  });

  it('retries 429 after Retry-After, and 500/408/resets with backoff; never other 4xx', async () => {
    const g = gen({ maxRetries: 3 });
    const t0 = performance.now();
    expect((await g.complete(user('429x2 a'))).text).toBe('echo: 429x2 a');
    const hits = since(t0);
    expect(hits.length).toBe(3);
    expect(hits[1]!.at - hits[0]!.at).toBeGreaterThanOrEqual(140); // Retry-After: 0.15 s
    expect(hits[2]!.at - hits[1]!.at).toBeGreaterThanOrEqual(140);
    await g.complete(user('500x2 b'));
    await g.complete(user('408x1 c'));
    await g.complete(user('resetx1 d'));
    const s = g.stats();
    expect(s.transient).toEqual({ rateLimited: 2, serverError: 2, timeout: 1, network: 1 });
    expect(s).toMatchObject({ requests: 4, attempts: 10, retries: 6, succeeded: 4, failed: {} });

    const bad = await failure(g.complete(user('400 e')));
    expect(bad).toMatchObject({ code: 'E_ARGUMENT', reason: 'client-error', status: 400, attempts: 1 });
    expect(bad.message).toMatch(/HTTP 400: max_tokens is too large/);
    const gaveUp = await failure(gen({ maxRetries: 2 }).complete(user('503x9 f')));
    expect(gaveUp).toMatchObject({ code: 'E_IO', reason: 'server-error', status: 503, attempts: 3 });
    expect(gaveUp.message).toMatch(/after 3 attempts/);
  });

  it('times out slow answers per request and retries them', async () => {
    const g = gen({ timeoutMs: 150, maxRetries: 1 });
    const t0 = performance.now();
    expect((await g.complete(user('slow400x1 a'))).text).toBe('echo: slow400x1 a');
    expect(performance.now() - t0).toBeLessThan(1000);
    const e = await failure(g.complete(user('slow2000 b')));
    expect(e).toMatchObject({ code: 'E_IO', reason: 'timeout', attempts: 2 });
    expect(g.stats().transient.timeout).toBe(2); // the last timeout is the failure itself
    expect(g.stats().failed).toEqual({ timeout: 1 });
  });

  it('fails malformed bodies at once with a clear error, counted', async () => {
    const g = gen({ maxRetries: 3 });
    const t0 = performance.now();
    const e = await failure(g.complete(user('malformed a')));
    expect(e).toMatchObject({ code: 'E_FORMAT', reason: 'malformed-response', attempts: 1 });
    expect(e.message).toMatch(/malformed body \(not JSON\)/);
    const e2 = await failure(g.complete(user('nochoices b')));
    expect(e2.message).toMatch(/no choices\[0\]/);
    expect(since(t0).length).toBe(2);
    expect(g.stats().failed).toEqual({ 'malformed-response': 2 });
  });

  it('holds the requests-per-minute limit (server arrival times)', async () => {
    // Open the connections first: a new connection's setup would shift arrival times.
    const warm = gen({ concurrency: 16 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => warm.complete(user(`slow50 warm${i}`))));
    const g = gen({ requestsPerMinute: 1200, burst: { requests: 2 }, concurrency: 16 }); // 20/s, 2 at once
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 12 }, (_, i) => g.complete(user(`ok r${i}`))));
    const at = since(t0).map((r) => r.at).sort((a, b) => a - b);
    expect(at.length).toBe(12);
    // Any window holds at most burst + rate * width requests, plus one for the jitter of a loaded
    // machine (a request delayed in transit arrives next to the one after it); without the limit
    // all 12 arrive within a few ms.
    for (let i = 0; i < at.length; i++)
      for (let j = i + 3; j < at.length; j++) expect(at[j]! - at[i]!).toBeGreaterThanOrEqual((j - i - 2) * 50 - 25);
    expect(g.stats().rateLimitWaitMs).toBeGreaterThan(0);
  });

  it('holds the tokens-per-minute limit and the concurrency bound', async () => {
    // 1000 tokens/s, bucket of 200; each request counts as ~3 prompt tokens + 90 max tokens.
    const g = gen({ tokensPerMinute: 60_000, burst: { tokens: 200 }, concurrency: 16 });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 6 }, (_, i) => g.complete({ ...user(`ok t${i}`), maxTokens: 90 })));
    const at = since(t0).map((r) => r.at).sort((a, b) => a - b);
    // 6 x ~93 tokens from a bucket of 200 filling at 1/ms: the last starts ~360 ms after the first
    // (100 ms of slack for a loaded machine; without the limit all 6 arrive within a few ms).
    expect(at.at(-1)! - at[0]!).toBeGreaterThanOrEqual(260);

    const before = server.maxInFlight;
    const c = gen({ concurrency: 2 });
    await Promise.all(Array.from({ length: 6 }, (_, i) => c.complete(user(`slow60 c${i}`))));
    expect(server.maxInFlight).toBeLessThanOrEqual(Math.max(before, 2));
  });

  it('cancels on the AbortSignal, including a wait for a retry', async () => {
    const g = gen({ timeoutMs: 5000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const t0 = performance.now();
    const e = await failure(g.complete({ ...user('slow3000 a'), signal: ac.signal }));
    expect(e).toMatchObject({ code: 'E_ABORTED', reason: 'aborted' });
    expect(performance.now() - t0).toBeLessThan(1500);
    const slowRetry = gen({ backoff: { initialMs: 5000, maxMs: 5000 } });
    const ac2 = new AbortController();
    setTimeout(() => ac2.abort(), 150);
    expect(await failure(slowRetry.complete({ ...user('500x1 z'), signal: ac2.signal }))).toMatchObject({ reason: 'aborted' });
  });

  it('rejects bad configs and requests with errors that name the field', () => {
    expect(() => new OpenAIHttpGenerator({ baseURL: 'ftp://x', model: 'm' })).toThrow(/baseURL must be an http\(s\) URL/);
    expect(() => new OpenAIHttpGenerator({ baseURL: 'not a url', model: 'm' })).toThrow(/baseURL/);
    expect(() => new OpenAIHttpGenerator({ baseURL: server.url, model: '' })).toThrow(/model/);
    expect(() => new OpenAIHttpGenerator({ baseURL: server.url, model: 'm', requestsPerMinute: 0 })).toThrow(/requestsPerMinute must be > 0/);
    const g = gen();
    return Promise.all([
      expect(g.complete({ messages: [] })).rejects.toThrow(/messages must be a non-empty list/),
      expect(g.complete({ ...user('ok'), temperature: -1 })).rejects.toThrow(/temperature must be in/),
      expect(g.complete({ messages: [{ role: 'robot', content: 'x' }] } as never)).rejects.toThrow(/messages\[0\]/),
    ]);
  });

  it('reads Retry-After in every form; a token bucket refills at its rate', async () => {
    expect(retryAfterMs(new Headers({ 'retry-after': '2' }))).toBe(2000);
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '250', 'retry-after': '9' }))).toBe(250);
    expect(retryAfterMs(new Headers({ 'retry-after': new Date(10_000).toUTCString() }), 4000)).toBe(6000);
    expect(retryAfterMs(new Headers({ 'retry-after': 'soon' }))).toBeNull();
    expect(retryAfterMs(new Headers())).toBeNull();
    let t = 0;
    const b = new TokenBucket(10, 5, () => t);
    expect(await b.take(5)).toBe(0);
    b.charge(-2); // a refund
    expect(await b.take(2)).toBe(0);
    t += 300; // +3
    expect(await b.take(3)).toBe(0);
    expect(() => new TokenBucket(0, 1)).toThrow(/rate must be > 0/);
  });
});
