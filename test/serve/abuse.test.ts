// The server under abuse: malformed and oversize bodies, wrong types, unknown models, clients that
// disconnect or stop reading, a full queue, timeouts, 64 concurrent streams with random
// cancellations and 2,000 small requests. Every one is answered 4xx (or handled), the server stays
// up, and the KV blocks in use and the running requests return to 0.
import * as http from 'node:http';
import * as net from 'node:net';
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_NAME, metric, settled, startServer, tinyFolder } from './fixture.js';

let folder: Awaited<ReturnType<typeof tinyFolder>>;
let main: { app: FastifyInstance; url: string };
let tight: { app: FastifyInstance; url: string };

beforeAll(async () => {
  folder = await tinyFolder();
  main = await startServer(folder.dir);
  tight = await startServer(folder.dir, { maxConcurrency: 1, queueSize: 1, requestTimeoutMs: 12_000, bodyLimit: 64 * 1024 });
}, 60_000);

afterAll(async () => {
  await main?.app.close();
  await tight?.app.close();
  folder?.cleanup();
});

async function post(url: string, path: string, body: string, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const r = await fetch(`${url}${path}`, { method: 'POST', headers, body });
  const text = await r.text();
  let json: { error?: { message: string; type: string; param: string | null; code: string | null } } = {};
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON: the assertions below say so */
  }
  return { status: r.status, json, headers: r.headers, text };
}

function expectOpenAIError(r: Awaited<ReturnType<typeof post>>, status: number, param?: string | null) {
  expect(r.status, r.text).toBe(status);
  expect(Object.keys(r.json.error ?? {}).sort(), r.text).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof r.json.error!.message).toBe('string');
  if (param !== undefined) expect(r.json.error!.param).toBe(param);
}

/** Polls a condition (every 25 ms, up to 20 s: these machines are shared); whether it came true. */
async function until(cond: () => Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 800; i++) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

/** Completion requests the server saw its client hang up on (status 499 in its metrics). */
async function hangUps(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^patentgpt_requests_total\{endpoint="\/v1\/completions",status="499"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** Opens a streaming request and resolves with the socket side once the first SSE bytes arrive. */
function openStream(url: string, body: object): Promise<{ req: http.ClientRequest; res: http.IncomingMessage; first: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.once('data', (b: Buffer) => {
        res.pause();
        resolve({ req, res, first: b.toString() });
      });
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('serve: abuse', () => {
  it('malformed JSON, empty and non-JSON bodies, oversize bodies: 4xx in OpenAI shape', async () => {
    expectOpenAIError(await post(main.url, '/v1/completions', '{"model": "tiny-serve", "prompt": '), 400);
    expectOpenAIError(await post(main.url, '/v1/chat/completions', ''), 400);
    expectOpenAIError(await post(main.url, '/v1/completions', 'prompt=x', { 'content-type': 'text/plain' }), 415);
    expectOpenAIError(await post(main.url, '/v1/completions', '[1, 2, 3]'), 400);
    const big = JSON.stringify({ model: MODEL_NAME, prompt: 'x'.repeat(100 * 1024) });
    expectOpenAIError(await post(tight.url, '/v1/completions', big), 413);
    expectOpenAIError(await post(main.url, '/v1/nothing-here', '{}'), 404);
  });

  it('wrong types are refused, never coerced; negative or zero max_tokens; unknown model; prompts over the limit', async () => {
    const bad: [object, string | null][] = [
      [{ model: MODEL_NAME, prompt: 'x', max_tokens: '10' }, 'max_tokens'],
      [{ model: MODEL_NAME, prompt: 'x', max_tokens: -5 }, 'max_tokens'],
      [{ model: MODEL_NAME, prompt: 'x', max_tokens: 0 }, 'max_tokens'],
      [{ model: MODEL_NAME, prompt: 'x', max_tokens: 1.5 }, 'max_tokens'],
      [{ model: MODEL_NAME, prompt: 5 }, 'prompt'],
      [{ model: MODEL_NAME, prompt: [[]] }, 'prompt'],
      [{ model: MODEL_NAME, prompt: [-1] }, 'prompt'],
      [{ model: MODEL_NAME, prompt: [999] }, null], // outside the vocabulary: the engine refuses it
      [{ model: MODEL_NAME, prompt: 'x', temperature: 'hot' }, 'temperature'],
      [{ model: MODEL_NAME, prompt: 'x', stream: 'yes' }, 'stream'],
      [{ model: MODEL_NAME, prompt: 'x', n: 0 }, 'n'],
      [{ model: MODEL_NAME, prompt: 'x', stop: 3 }, 'stop'],
      [{ model: MODEL_NAME, prompt: 'x', logprobs: 50 }, 'logprobs'],
      [{ model: MODEL_NAME, prompt: 'x', suffix: 'y' }, 'suffix'],
      [{ model: MODEL_NAME, prompt: 'x', logit_bias: { 5: 10 } }, 'logit_bias'],
      [{ prompt: 'x' }, 'model'],
      [{ model: 7, prompt: 'x' }, 'model'],
    ];
    for (const [body, param] of bad) expectOpenAIError(await post(main.url, '/v1/completions', JSON.stringify(body)), 400, param);
    const chatBad: [object, string][] = [
      [{ model: MODEL_NAME, messages: 'hi' }, 'messages'],
      [{ model: MODEL_NAME, messages: [] }, 'messages'],
      [{ model: MODEL_NAME, messages: [{ role: 'wizard', content: 'x' }] }, 'messages.0.role'],
      [{ model: MODEL_NAME, messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }, 'messages[0].content[0].type'],
      [{ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }, 'top_logprobs'],
    ];
    for (const [body, param] of chatBad) expectOpenAIError(await post(main.url, '/v1/chat/completions', JSON.stringify(body)), 400, param);
    expectOpenAIError(await post(main.url, '/v1/completions', JSON.stringify({ model: 'nope', prompt: 'x' })), 404, 'model');
    expectOpenAIError(await post(main.url, '/detokenize', JSON.stringify({ tokens: [100000] })), 400);
    expect((await fetch(`${main.url}/health`)).status).toBe(200);
  });

  it('a client that disconnects mid-stream, mid-generation (not streamed) or while queued: the request is cancelled (499), its KV blocks and its slot freed', async () => {
    const long = { model: MODEL_NAME, prompt: 'abc', max_tokens: 240, n: 64, ignore_eos: true, temperature: 0 };
    // Mid-stream.
    let cut = await hangUps(main.url);
    const s = await openStream(main.url, { ...long, stream: true });
    expect(s.first).toMatch(/^data: /);
    expect(await metric(main.url, 'patentgpt_kv_blocks_in_use')).toBeGreaterThan(0);
    s.req.destroy();
    expect(await until(async () => (await hangUps(main.url)) === cut + 1)).toBe(true);
    expect(await settled(main.url)).toEqual({ kv: 0, running: 0 });
    // Not streamed: nothing is written until the end, so only the connection's close tells.
    cut = await hangUps(main.url);
    const whole = http.request(`${main.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    whole.on('error', () => undefined);
    whole.end(JSON.stringify(long));
    expect(await until(async () => (await metric(main.url, 'patentgpt_kv_blocks_in_use')) > 0)).toBe(true);
    whole.destroy();
    expect(await until(async () => (await hangUps(main.url)) === cut + 1)).toBe(true);
    expect(await settled(main.url)).toEqual({ kv: 0, running: 0 });
    // Queued: the tight server has one slot; the second request waits and then disconnects.
    cut = await hangUps(tight.url);
    const holder = http.request(`${tight.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    holder.on('error', () => undefined);
    holder.end(JSON.stringify(long));
    expect(await until(async () => (await metric(tight.url, 'patentgpt_requests_running')) === 1)).toBe(true);
    const queued = http.request(`${tight.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } });
    queued.on('error', () => undefined);
    queued.end(JSON.stringify({ model: MODEL_NAME, prompt: 'q', max_tokens: 5 }));
    expect(await until(async () => (await metric(tight.url, 'patentgpt_queue_depth')) === 1)).toBe(true);
    queued.destroy();
    expect(await until(async () => (await hangUps(tight.url)) === cut + 1)).toBe(true); // answered 499 at once, never run
    expect(await metric(tight.url, 'patentgpt_queue_depth')).toBe(0);
    holder.destroy();
    expect(await until(async () => (await hangUps(tight.url)) === cut + 2)).toBe(true);
    expect(await settled(tight.url)).toEqual({ kv: 0, running: 0 });
  }, 30_000);

  it('a full queue answers 429 with Retry-After (the openai client raises RateLimitError)', async () => {
    const holder = await openStream(tight.url, { model: MODEL_NAME, prompt: 'abc', max_tokens: 200, ignore_eos: true, stream: true });
    const waiting = fetch(`${tight.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL_NAME, prompt: 'q', max_tokens: 3 }) });
    for (let i = 0; i < 100 && (await metric(tight.url, 'patentgpt_queue_depth')) === 0; i++) await new Promise((r) => setTimeout(r, 20));
    const r = await post(tight.url, '/v1/completions', JSON.stringify({ model: MODEL_NAME, prompt: 'x', max_tokens: 3 }));
    expectOpenAIError(r, 429);
    expect(r.headers.get('retry-after')).toBe('1');
    const client = new OpenAI({ baseURL: `${tight.url}/v1`, apiKey: 'x', maxRetries: 0 });
    await expect(client.completions.create({ model: MODEL_NAME, prompt: 'x', max_tokens: 3 })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    holder.req.destroy();
    expect((await waiting).status).toBe(200); // the queued one got the slot
    expect(await settled(tight.url)).toEqual({ kv: 0, running: 0 });
  });

  it('a slow client that never reads holds its slot only until the request timeout (then it is cut); a request whose time runs out gets 504; the server goes on', async () => {
    // 64 choices of 60 tokens with 20 log-probs each: ~5 MB of SSE, more than the socket buffers hold (~3 MB here).
    const body = JSON.stringify({ model: MODEL_NAME, messages: [{ role: 'user', content: 'slow' }], max_tokens: 60, n: 64, logprobs: true, top_logprobs: 20, ignore_eos: true, stream: true });
    const sock = net.connect(Number(new URL(tight.url).port), '127.0.0.1');
    sock.pause(); // never reads
    try {
      sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      await until(async () => (await metric(tight.url, 'patentgpt_requests_running')) === 1);
      // Queued behind it, a long request whose time runs out soon after it gets the slot: 504.
      const queued = post(tight.url, '/v1/completions', JSON.stringify({ model: MODEL_NAME, prompt: 'q', max_tokens: 200, n: 64, ignore_eos: true }));
      // The engine finishes (its KV blocks are free) while the server still waits to write to the reader.
      expect(await until(async () => (await metric(tight.url, 'patentgpt_kv_blocks_in_use')) === 0 && (await metric(tight.url, 'patentgpt_requests_running')) === 1)).toBe(true);
      expect(await metric(tight.url, 'patentgpt_queue_depth')).toBe(1);
      const q = await queued;
      expectOpenAIError(q, 504);
      expect(q.json.error!.code).toBe('request_timeout');
      expect(await settled(tight.url)).toEqual({ kv: 0, running: 0 });
      // The reader was cut: reading now gives part of the stream and no [DONE].
      let text = '';
      sock.on('data', (b: Buffer) => (text += b.toString()));
      await new Promise<void>((resolve) => {
        sock.once('close', () => resolve());
        sock.once('error', () => resolve());
        sock.resume();
      });
      expect(text).toMatch(/^HTTP\/1.1 200/);
      expect(text).not.toContain('data: [DONE]');
    } finally {
      sock.destroy();
    }
    const ok = await post(tight.url, '/v1/completions', JSON.stringify({ model: MODEL_NAME, prompt: 'q', max_tokens: 3 }));
    expect(ok.status).toBe(200);
  }, 45_000);

  it('64 concurrent streams with random cancellations: the rest finish, KV blocks return to 0, the server stays up', async () => {
    const client = new OpenAI({ baseURL: `${main.url}/v1`, apiKey: 'x', maxRetries: 0 });
    let rng = 12345;
    const rand = () => ((rng = (rng * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const outcomes = await Promise.all(Array.from({ length: 64 }, async (_, i) => {
      const cancelAfter = rand() < 0.5 ? Math.floor(rand() * 8) : -1;
      const chat = i % 2 === 0;
      const stream = chat
        ? await client.chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: `q${i}` }], max_tokens: 150, stream: true, seed: i })
        : await client.completions.create({ model: MODEL_NAME, prompt: `p${i}`, max_tokens: 150, stream: true, seed: i });
      let chunks = 0;
      try {
        for await (const _c of stream as AsyncIterable<unknown>) {
          if (++chunks === cancelAfter) {
            stream.controller.abort(); // the client hangs up mid-stream
            break; // (iterating on after abort() can hang inside openai-node)
          }
        }
        return cancelAfter >= 0 && chunks >= cancelAfter ? 'cancelled' : 'done';
      } catch (e) {
        if (stream.controller.signal.aborted) return 'cancelled';
        throw e;
      }
    }));
    expect(outcomes.filter((o) => o === 'cancelled').length).toBeGreaterThan(10);
    expect(outcomes.filter((o) => o === 'done').length).toBeGreaterThan(10);
    // The server saw the hang-ups (answered 499 in its metrics), not streams that had ended already.
    expect(await metric(main.url, 'patentgpt_requests_total{endpoint="/v1/completions",status="499"}')).toBeGreaterThan(3);
    expect(await metric(main.url, 'patentgpt_requests_total{endpoint="/v1/chat/completions",status="499"}')).toBeGreaterThan(3);
    expect(await settled(main.url)).toEqual({ kv: 0, running: 0 });
    expect((await fetch(`${main.url}/health`)).status).toBe(200);
  }, 30_000);

  it('RSS stays roughly flat over 2,000 small requests', async () => {
    const one = (i: number) => post(main.url, '/v1/completions', JSON.stringify({ model: MODEL_NAME, prompt: `r${i % 50}`, max_tokens: 2, temperature: 0 }));
    const run = async (from: number, to: number) => {
      let next = from;
      await Promise.all(Array.from({ length: 16 }, async () => {
        while (next < to) {
          const r = await one(next++);
          expect(r.status).toBe(200);
        }
      }));
    };
    await run(0, 400); // warm-up: JIT, buffers, pools
    const before = process.memoryUsage().rss;
    await run(400, 2400);
    const grown = process.memoryUsage().rss - before;
    expect(grown).toBeLessThan(64 * 2 ** 20);
    expect(await settled(main.url)).toEqual({ kv: 0, running: 0 });
  }, 60_000);
});
