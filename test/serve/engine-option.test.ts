// createServer over a caller's engine (an in-thread Engine, as a Node service that already has
// one would mount it): it serves, it never closes that engine, and once the engine is gone
// /health and generations answer 503. Options are checked naming the field.
import { rmSync } from 'node:fs';
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
});
