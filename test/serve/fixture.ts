// A tiny model folder for the server tests (savePretrained with the byte tokenizer, so the folder
// records its tokenizer) and a server on loopback over it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { LlamaForCausalLM, preset, savePretrained, validateConfig } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/index.js';
import { createServer, type ServerOptions } from '../../src/serve/index.js';

export const MODEL_NAME = 'tiny-serve';

/** A folder holding a random tiny LLaMA (byte vocabulary, context 256) and its tokenizer. */
export async function tinyFolder(): Promise<{ root: string; dir: string; cleanup: () => void }> {
  const root = mkdtempSync(join(tmpdir(), 'pg-serve-'));
  const dir = join(root, MODEL_NAME);
  const cfg = validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: 256 });
  const model = new LlamaForCausalLM(cfg, { seed: 7, initStd: 0.08 });
  await savePretrained(model, dir, { tokenizer: new ByteTokenizer() });
  model.dispose();
  return { root, dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/** A server over the folder, listening on a free loopback port. */
export async function startServer(dir: string, opts: Omit<ServerOptions, 'model'> = {}): Promise<{ app: FastifyInstance; url: string }> {
  const app = await createServer({ model: dir, engineOptions: { kvCacheBytes: 2 ** 22 }, ...opts });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url };
}

/** A gauge or counter's value from the /metrics text. */
export async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (!line) throw new Error(`no metric ${name} in /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Polls until the engine holds no KV blocks and no request runs (cancellation is asynchronous). */
export async function settled(url: string): Promise<{ kv: number; running: number }> {
  let kv = -1;
  let running = -1;
  for (let i = 0; i < 200; i++) {
    kv = await metric(url, 'patentgpt_kv_blocks_in_use');
    running = await metric(url, 'patentgpt_requests_running');
    if (kv === 0 && running === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return { kv, running };
}
