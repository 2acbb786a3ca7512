// patentgpt serve: listens on the given port, requires a key off loopback, answers with Bearer
// keys, and on SIGTERM drains: the stream in flight finishes with [DONE], new requests are
// refused, and the process exits 0.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL_NAME, tinyFolder } from './fixture.js';

const main = new URL('../../src/cli/main.ts', import.meta.url).pathname;
let folder: Awaited<ReturnType<typeof tinyFolder>>;

beforeAll(async () => {
  folder = await tinyFolder();
}, 60_000);
afterAll(() => folder?.cleanup());

/** Starts `patentgpt serve` and resolves with its URL once it listens. */
function serve(...args: string[]): Promise<{ child: ChildProcess; url: string; out: () => string; err: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', main, 'serve', '--model', folder.dir, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+) \(model (\S+)\)/.exec(out);
      if (m) resolve({ child, url: m[1]!, out: () => out, err: () => err });
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

describe('patentgpt serve', () => {
  it('SIGTERM drains: the stream in flight ends with [DONE], later requests are refused, exit code 0', async () => {
    const { child, url, err } = await serve('--model-name', 'm');
    const done = exited(child);
    try {
      const body = JSON.stringify({ model: 'm', prompt: 'drain', max_tokens: 200, n: 8, ignore_eos: true, stream: true });
      const text = await new Promise<string>((resolve, reject) => {
        const req = http.request(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
          let t = '';
          res.on('data', (b: Buffer) => {
            if (t === '') child.kill('SIGTERM'); // mid-stream
            t += b.toString();
          });
          res.on('end', () => resolve(t));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      expect(text.match(/"finish_reason":"length"/g)).toHaveLength(8);
      const late = await fetch(`${url}/health`).then((r) => r.status, () => 'refused');
      expect([503, 'refused']).toContain(late);
      expect(await done).toBe(0);
      expect(err()).toMatch(/SIGTERM: draining/);
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);

  it('--api-key: /v1 needs the Bearer key (401 in OpenAI shape without it), /health does not', async () => {
    const { child, url } = await serve('--api-key', 'sk-local');
    try {
      const ask = (auth?: string) => fetch(`${url}/v1/models`, { headers: auth ? { authorization: auth } : {} });
      const none = await ask();
      expect(none.status).toBe(401);
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');
      expect((await ask('Bearer sk-wrong')).status).toBe(401);
      const ok = await ask('Bearer sk-local');
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as { data: { id: string }[] }).data[0]!.id).toBe(MODEL_NAME);
      expect((await fetch(`${url}/health`)).status).toBe(200);
    } finally {
      child.kill('SIGTERM');
      await exited(child);
    }
  }, 60_000);

  it('refuses a non-loopback host without an API key, saying how to give one', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', main, 'serve', '--model', folder.dir, '--host', '0.0.0.0', '--port', '0'], { encoding: 'utf8', env: { ...process.env, PATENTGPT_API_KEY: '' } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/host 0\.0\.0\.0 is not loopback, so an API key is required/);
  }, 60_000);
});
