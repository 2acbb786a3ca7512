// --kv-cache-dtype on the CLI: generate streams the 16-bit-cache engine's text and says which cache
// it used; serve with bf16 holds twice the KV blocks of f32 in the same --kv-cache-mb (its
// /metrics) and answers completions; a value other than f32, bf16, f16 is refused by name.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/infer/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { mainTs, tinyFolder } from '../cli/infer-cli-fixtures.js';

const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', mainTs, ...args], { encoding: 'utf8' });

/** `patentgpt serve` on a free port; resolves with its URL once it listens. */
function serve(dir: string, ...args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', mainTs, 'serve', '--model', dir, '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

async function blocksTotal(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('patentgpt_kv_blocks_total '));
  return Number(line!.split(' ')[1]);
}

describe('--kv-cache-dtype', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await tinyFolder();
  });
  afterAll(() => {
    if (dir) rmSync(dirname(dir), { recursive: true, force: true });
  });

  it('generate: stdout is the f16-cache engine\'s greedy text, the summary names the cache; a bad value is refused', async () => {
    const prompt = 'Claim 1. A method of';
    const r = cli('generate', '--model', dir, '--prompt', prompt, '--max-tokens', '24', '--ignore-eos', '--temperature', '0', '--kv-cache-dtype', 'f16');
    expect(r.status, r.stderr).toBe(0);
    const engine = await Engine.fromPretrained(dir, { tokenizer: new ByteTokenizer(), kvCacheDType: 'f16' });
    const want = (await engine.complete(prompt, { maxTokens: 24, ignoreEos: true })).text;
    engine.close();
    expect(r.stdout).toBe(want);
    expect(r.stderr).toMatch(/finish: length, KV cache f16/);
    const bad = cli('generate', '--model', dir, '--prompt', prompt, '--kv-cache-dtype', 'f8');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--kv-cache-dtype <type>' argument 'f8' is invalid\. Allowed choices are f32, bf16, f16/);
  }, 60_000);

  it('serve: a bf16 cache holds twice the blocks of f32 in the same --kv-cache-mb and answers; a bad value exits non-zero', async () => {
    const totals: number[] = [];
    for (const dtype of ['f32', 'bf16']) {
      const { child, url } = await serve(dir, '--kv-cache-mb', '1', '--kv-cache-dtype', dtype);
      try {
        totals.push(await blocksTotal(url));
        const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'model', prompt: 'A method for', max_tokens: 8, ignore_eos: true }) });
        expect(res.status).toBe(200);
        expect(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(8);
      } finally {
        child.kill('SIGKILL');
      }
    }
    expect(totals[0]).toBeGreaterThan(0);
    expect(totals[1]).toBe(2 * totals[0]!);
    const bad = cli('serve', '--model', dir, '--port', '0', '--kv-cache-dtype', 'int8');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/Allowed choices are f32, bf16, f16/);
  }, 90_000);
});
