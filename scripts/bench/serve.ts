// npm run bench -- serve [--preset llama-110m] [--clients 1,16,64] [--new 64] [--prompt 32] [--rounds 3]
//                        [--threads 2] [--quick]
// The OpenAI-compatible server against the engine it runs on, in one process and one run:
// - engine: ThreadedEngine.generate() called in-process by C concurrent streams (the figure the
//   server can at best reach: the same worker-thread engine, no HTTP);
// - http: createServer() on loopback over the same model folder, C concurrent streaming clients
//   (POST /v1/completions, stream: true, a plain node:http SSE reader each, all in a load
//   generator thread of their own, so the server's event loop does only the server's work);
// for C in --clients: aggregate tokens/s (every stream's tokens over the wall time of the batch),
// p50/p99 time to first token and inter-token latency, interleaved over --rounds rounds with the
// best round of each side kept (these machines are noisy). The ratio http/engine at 16 clients is
// the target (HTTP overhead under 5%). Random weights: speed does not depend on them.
// --quick: llama-5m, 1 and 16 clients, 32 new tokens, 2 rounds (a smoke run; on a model this small
// the server's per-token work weighs far more than on a real one).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { ThreadedEngine } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, savePretrained, validateConfig } from '../../src/models/index.js';
import { createServer } from '../../src/serve/index.js';
import { runtimeInfo, setNumThreads } from '../../src/tensor/index.js';
import { ByteTokenizer, SentencePieceTokenizer } from '../../src/tokenizer/index.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const quick = process.argv.includes('--quick');
const presetName = arg('preset', quick ? 'llama-5m' : 'llama-110m');
const clients = arg('clients', quick ? '1,16' : '1,16,64').split(',').map(Number);
const nNew = Number(arg('new', quick ? '32' : '64'));
const promptLen = Number(arg('prompt', quick ? '16' : '32'));
const rounds = Number(arg('rounds', quick ? '2' : '3'));
const threads = setNumThreads(Number(arg('threads', '2')));
const kvCacheBytes = 512 * 2 ** 20;

// ---- the model folder: the preset's weights (random) with a tokenizer that fits its vocabulary
const base = preset(presetName).config;
const tok = base.vocabSize >= 32000 ? SentencePieceTokenizer.llama2() : new ByteTokenizer();
const cfg = validateConfig({ ...base, vocabSize: tok.vocabSize }); // every id the model can sample decodes
const root = mkdtempSync(join(tmpdir(), 'pg-bench-serve-'));
const dir = join(root, 'model');
{
  const model = new LlamaForCausalLM(cfg, { seed: 1, initStd: 0.02 });
  await savePretrained(model, dir, { tokenizer: tok });
  model.dispose();
}
const maxNumSeqs = Math.max(64, ...clients);
const engineOptions = { kvCacheBytes, maxNumSeqs };

/** A prompt of about promptLen tokens, different per stream (no prefix-cache sharing beyond BOS). */
function promptText(i: number): string {
  const words = ['claim', 'method', 'apparatus', 'wherein', 'said', 'comprising', 'patent', 'device'];
  const out: string[] = [];
  for (let k = 0; out.join(' ').length < promptLen * (tok instanceof ByteTokenizer ? 1 : 4); k++) out.push(words[(i * 7 + k * 3) % words.length]! + String(i));
  return out.join(' ');
}

interface StreamTimes {
  start: number;
  /** Arrival times of the token events (engine: each token; http: each SSE event with text). */
  tokens: number[];
  /** Tokens generated (http: the usage chunk's count; an event whose text is held back is not sent). */
  count: number;
}

interface Figure {
  tokS: number;
  ttft: number[];
  itl: number[];
}

function summarize(streams: StreamTimes[], wall: number): Figure {
  const ttft: number[] = [];
  const itl: number[] = [];
  let total = 0;
  for (const s of streams) {
    total += s.count;
    if (s.tokens.length) ttft.push(s.tokens[0]! - s.start);
    for (let i = 1; i < s.tokens.length; i++) itl.push(s.tokens[i]! - s.tokens[i - 1]!);
  }
  return { tokS: total / (wall / 1000), ttft, itl };
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const engine = await ThreadedEngine.fromPretrained(dir, { ...engineOptions, tokenizer: tok });

async function runEngine(c: number): Promise<Figure> {
  const t0 = performance.now();
  const streams = await Promise.all(Array.from({ length: c }, async (_, i) => {
    const s: StreamTimes = { start: performance.now(), tokens: [], count: 0 };
    const ids = tok.encode(promptText(i), { bos: true });
    for await (const d of engine.generate(ids, { maxTokens: nNew, ignoreEos: true, temperature: 0 })) {
      const t = performance.now();
      for (let k = 0; k < d.tokens.length; k++) s.tokens.push(t);
      s.count += d.tokens.length;
    }
    return s;
  }));
  return summarize(streams, performance.now() - t0);
}

const app = await createServer({ model: dir, engineOptions, maxConcurrency: maxNumSeqs, modelName: 'bench' });
const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));

// The load generator runs in a worker thread of its own (plain JavaScript, node:http, one SSE
// reader per stream), so the server's event loop does only the server's work, as it would with
// remote clients. A token's time is its SSE event's arrival; the count is the usage chunk's (an
// event whose text is held back, e.g. an unfinished UTF-8 character, is not sent).
const LOADGEN = `
const http = require('node:http');
const { parentPort } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });
function stream(host, port, body) {
  const s = { start: performance.now(), tokens: [], count: 0 };
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path: '/v1/completions', method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      if (res.statusCode !== 200) reject(new Error('HTTP ' + res.statusCode));
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        const t = performance.now();
        buf += chunk;
        let at;
        while ((at = buf.indexOf('\\n\\n')) >= 0) {
          const ev = buf.slice(0, at);
          buf = buf.slice(at + 2);
          if (!ev.startsWith('data: {')) continue;
          const u = /"usage":\\{"prompt_tokens":\\d+,"completion_tokens":(\\d+)/.exec(ev);
          if (u) s.count = Number(u[1]);
          else s.tokens.push(t);
        }
      });
      res.on('end', () => resolve(s));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}
parentPort.on('message', async ({ host, port, bodies }) => {
  const t0 = performance.now();
  const streams = await Promise.all(bodies.map((b) => stream(host, port, b)));
  parentPort.postMessage({ streams, wall: performance.now() - t0 });
});
`;
const loadgen = new Worker(LOADGEN, { eval: true });

async function runHttp(c: number): Promise<Figure> {
  const bodies = Array.from({ length: c }, (_, i) => JSON.stringify({
    model: 'bench', prompt: promptText(i), max_tokens: nNew, ignore_eos: true, temperature: 0, stream: true, stream_options: { include_usage: true },
  }));
  const done = new Promise<{ streams: StreamTimes[]; wall: number }>((resolve, reject) => {
    loadgen.once('message', resolve);
    loadgen.once('error', reject);
  });
  loadgen.postMessage({ host: url.hostname, port: Number(url.port), bodies });
  const { streams, wall } = await done;
  return summarize(streams, wall);
}

console.log(`# serve: ${presetName} f32 (${(cfg.vocabSize)} vocab), ${threads} threads, ${runtimeInfo().simd}, load average ${loadavg()[0]!.toFixed(1)}; ` +
  `${promptLen}-token prompts, ${nNew} new tokens per stream, best of ${rounds} interleaved rounds${quick ? ' (--quick)' : ''}`);

// Warm-up: JIT, buffers, both engines' first steps.
await runEngine(Math.min(4, clients[clients.length - 1]!));
await runHttp(Math.min(4, clients[clients.length - 1]!));

const rows: { clients: number; engine: Figure; http: Figure }[] = [];
for (const c of clients) {
  let bestE: Figure | null = null;
  let bestH: Figure | null = null;
  for (let r = 0; r < rounds; r++) {
    const e = await runEngine(c);
    const h = await runHttp(c);
    if (!bestE || e.tokS > bestE.tokS) bestE = e;
    if (!bestH || h.tokS > bestH.tokS) bestH = h;
  }
  rows.push({ clients: c, engine: bestE!, http: bestH! });
}

const ms = (x: number): string => (Number.isNaN(x) ? '-' : x < 10 ? x.toFixed(2) : x.toFixed(1));
console.log('');
console.log('| clients | engine tok/s | http tok/s | http/engine | TTFT p50/p99 ms engine | TTFT p50/p99 ms http | ITL p50/p99 ms engine | ITL p50/p99 ms http |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.clients} | ${r.engine.tokS.toFixed(0)} | ${r.http.tokS.toFixed(0)} | ${(r.http.tokS / r.engine.tokS).toFixed(3)} | ` +
    `${ms(pct(r.engine.ttft, 50))} / ${ms(pct(r.engine.ttft, 99))} | ${ms(pct(r.http.ttft, 50))} / ${ms(pct(r.http.ttft, 99))} | ` +
    `${ms(pct(r.engine.itl, 50))} / ${ms(pct(r.engine.itl, 99))} | ${ms(pct(r.http.itl, 50))} / ${ms(pct(r.http.itl, 99))} |`);
}
const at16 = rows.find((r) => r.clients === 16);
if (at16) {
  const overhead = 1 - at16.http.tokS / at16.engine.tokS;
  console.log(`\nHTTP overhead at 16 clients: ${(overhead * 100).toFixed(1)}% of aggregate tokens/s (target < 5%)`);
}
console.log(JSON.stringify({
  bench: 'serve', preset: presetName, quick, threads, promptLen, nNew, rounds,
  rows: rows.map((r) => ({
    clients: r.clients,
    engineTokS: +r.engine.tokS.toFixed(1), httpTokS: +r.http.tokS.toFixed(1), ratio: +(r.http.tokS / r.engine.tokS).toFixed(4),
    engineTtftP50Ms: +pct(r.engine.ttft, 50).toFixed(2), engineTtftP99Ms: +pct(r.engine.ttft, 99).toFixed(2),
    httpTtftP50Ms: +pct(r.http.ttft, 50).toFixed(2), httpTtftP99Ms: +pct(r.http.ttft, 99).toFixed(2),
    engineItlP50Ms: +pct(r.engine.itl, 50).toFixed(2), engineItlP99Ms: +pct(r.engine.itl, 99).toFixed(2),
    httpItlP50Ms: +pct(r.http.itl, 50).toFixed(2), httpItlP99Ms: +pct(r.http.itl, 99).toFixed(2),
  })),
}));

await loadgen.terminate();
await app.close();
await engine.close();
rmSync(root, { recursive: true, force: true });
