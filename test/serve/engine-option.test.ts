// createServer over a caller's engine (an in-thread Engine, as a Node service that already has
// one would mount it): it serves, it never closes that engine, and once the engine is gone
// /health and generations answer 503. Options are checked naming the field.
import { rmSync } from 'node:fs';
import * as http from 'node:http';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/infer/index.js';
import { createServer } from '../../src/serve/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { tinyFolder } from './fixture.js';

let folder: Awaited<ReturnType<typeof tinyFolder>>;
beforeAll(async () => {
  folder = await tinyFolder();
}, 60_000);
afterAll(() => folder && rmSync(folder.root, { recursive: true, force: true }));

describe('createServer({ engine })', () => {
  it('serves a caller\'s Engine, leaves it open on close(), and answers 503 once it is closed', async () => {
    const tok = new ByteTokenizer();
    const engine = await Engine.fromPretrained(folder.dir, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    const app = await createServer({ engine, tokenizer: tok, modelName: 'mine' });
    const ask = () => app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'mine', prompt: 'Claim 1.', max_tokens: 8, temperature: 0 } });
    const r = await ask();
    expect(r.statusCode).toBe(200);
    expect(r.json().choices[0].text).toBe((await engine.complete('Claim 1.', { maxTokens: 8, temperature: 0 })).text);
    expect(r.json().usage.prompt_tokens).toBe('Claim 1.'.length + 1);
    await app.close();
    expect(engine.stats().blocks.used).toBe(0); // still open: the caller's
    const again = await createServer({ engine, tokenizer: tok, modelName: 'mine' });
    engine.close();
    expect((await again.inject({ method: 'GET', url: '/health' })).statusCode).toBe(503);
    const gone = await again.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'mine', prompt: 'x', max_tokens: 2 } });
    expect(gone.statusCode).toBe(503);
    expect(gone.json().error.type).toBe('server_error');
    await again.close();
  }, 60_000);

  it('refuses options that cannot work, naming them', async () => {
    const tok = new ByteTokenizer();
    await expect(createServer({})).rejects.toThrow(/either model \(a model folder\) or engine/);
    const engine = await Engine.fromPretrained(folder.dir, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    try {
      await expect(createServer({ engine })).rejects.toThrow(/needs its tokenizer/);
      await expect(createServer({ engine, tokenizer: tok, host: '0.0.0.0' })).rejects.toThrow(/not loopback, so an API key is required/);
      await expect(createServer({ engine, tokenizer: tok, maxConcurrency: 0 })).rejects.toThrow(/maxConcurrency must be an integer >= 1/);
      await expect(createServer({ engine, tokenizer: tok, requestTimeoutMs: -1 })).rejects.toThrow(/requestTimeoutMs must be an integer >= 0/);
      const keyed = await createServer({ engine, tokenizer: tok, host: '0.0.0.0', apiKey: 'k' });
      expect((await keyed.inject({ method: 'GET', url: '/v1/models' })).statusCode).toBe(401);
      expect((await keyed.inject({ method: 'GET', url: '/v1/models', headers: { authorization: 'Bearer k' } })).statusCode).toBe(200);
      await keyed.close();
    } finally {
      engine.close();
    }
  }, 60_000);

  it('maxPromptTokens refuses longer prompts with context_length_exceeded', async () => {
    const tok = new ByteTokenizer();
    const engine = await Engine.fromPretrained(folder.dir, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    const app = await createServer({ engine, tokenizer: tok, modelName: 'mine', maxPromptTokens: 8 });
    try {
      const long = await app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'mine', prompt: 'twelve chars', max_tokens: 2 } });
      expect(long.statusCode).toBe(400);
      expect(long.json().error).toMatchObject({ code: 'context_length_exceeded', param: 'prompt' });
      expect(long.json().error.message).toMatch(/13 tokens; this server takes at most 8/);
      expect((await app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'mine', prompt: 'short', max_tokens: 2 } })).statusCode).toBe(200);
    } finally {
      await app.close();
      engine.close();
    }
  }, 60_000);

  // A server made without a key but bound to every interface answers the API on loopback only.
  const outside = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
  it.skipIf(!outside)('without a key, a connection that arrives on a non-loopback address gets 403 (listen() on 0.0.0.0 anyway)', async () => {
    const tok = new ByteTokenizer();
    const engine = await Engine.fromPretrained(folder.dir, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    const app = await createServer({ engine, tokenizer: tok });
    try {
      await app.listen({ host: '0.0.0.0', port: 0 });
      const port = (app.server.address() as { port: number }).port;
      const far = await fetch(`http://${outside}:${port}/v1/models`);
      expect(far.status).toBe(403);
      expect(((await far.json()) as { error: { code: string } }).error.code).toBe('api_key_required');
      expect((await fetch(`http://127.0.0.1:${port}/v1/models`)).status).toBe(200);
      expect((await fetch(`http://${outside}:${port}/health`)).status).toBe(200);
    } finally {
      await app.close();
      engine.close();
    }
  }, 60_000);

  it('mounts in another Node HTTP service: its routes answer through app.routing(req, res), streams included', async () => {
    const tok = new ByteTokenizer();
    const engine = await Engine.fromPretrained(folder.dir, { kvCacheBytes: 2 ** 22, tokenizer: tok });
    const app = await createServer({ engine, tokenizer: tok, modelName: 'mine' });
    await app.ready();
    const host = http.createServer((req, res) => {
      if (req.url!.startsWith('/v1/')) app.routing(req, res);
      else res.end('the host service');
    });
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', () => r()));
    const base = `http://127.0.0.1:${(host.address() as { port: number }).port}`;
    try {
      expect(await (await fetch(`${base}/`)).text()).toBe('the host service');
      const r = await fetch(`${base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'mine', prompt: 'Claim 1.', max_tokens: 6, temperature: 0, stream: true }) });
      const sse = await r.text();
      expect(sse.trimEnd().endsWith('data: [DONE]')).toBe(true);
      const text = sse.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => (JSON.parse(e.slice(6)) as { choices: { text: string }[] }).choices[0]!.text).join('');
      expect(text).toBe((await engine.complete('Claim 1.', { maxTokens: 6, temperature: 0 })).text);
    } finally {
      host.closeAllConnections();
      await new Promise((r) => host.close(r));
      await app.close();
      engine.close();
    }
  }, 60_000);
});
