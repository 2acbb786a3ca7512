// npm run bench -- infer [--preset llama-110m] [--threads 2] [--new 64] [--streams 1,4,16,64] [--rounds 4] [--no-peers]
// The inference engine on an f32 model (random weights of the preset; speed does not depend on
// their values):
// - single-stream decode tokens/s beside transformers' generate() on the same weights (saved as
//   an f32 safetensors folder; at 1 and at --threads threads, the best reported) when a Python
//   with torch is found, and beside the bound memory bandwidth sets (ours, the triad and
//   node-llama-cpp in --rounds interleaved rounds, each at its best): a decode step reads every weight once, so
//   bound = triad bandwidth / weight bytes per token, with the bandwidth of a STREAM-style
//   triad (y += a * x over 3 x 128 MiB, our thread pool) measured in the same run;
// - aggregate tokens/s with 1, 4, 16 and 64 concurrent requests (continuous batching);
// - KV cache bytes per token;
// - responsiveness: the main thread's event-loop delay (p99, max) while 16 requests generate,
//   with Engine (steps on this thread, yielding between them) and ThreadedEngine (steps in a
//   worker thread).
// - node-llama-cpp (prebuilt llama.cpp) on our GGUF export of the same weights (f32, f32 KV
//   cache), same prompt and thread count, when it can be loaded: PATENTGPT_NODE_LLAMA_CPP, the
//   package, or build-peers/node_modules/node-llama-cpp (npm install --prefix build-peers
//   --ignore-scripts node-llama-cpp with NODE_LLAMA_CPP_SKIP_DOWNLOAD=true).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exportGguf } from '../../src/export/gguf.js';
import { packageRoot } from '../../src/package.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/index.js';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Engine, ThreadedEngine, kvBytesPerToken } from '../../src/infer/index.js';
import { LlamaForCausalLM, preset, savePretrained } from '../../src/models/index.js';
import { addon } from '../../src/tensor/addon.js';
import { Tensor, runtimeInfo, setNumThreads } from '../../src/tensor/index.js';
import { findPython } from './_peers.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const presetName = arg('preset', 'llama-110m');
const threads = setNumThreads(Number(arg('threads', '2')));
const nNew = Number(arg('new', '64'));
const streams = arg('streams', '1,4,16,64').split(',').map(Number);
const noPeers = process.argv.includes('--no-peers');

/** GB/s of y += a * x (reads x and y, writes y) over n floats, best of 5. */
function triadGBs(n = 32 * 2 ** 20): number {
  const x = Tensor.full([n], 1);
  const y = Tensor.full([n], 2);
  const run = (): void => addon().axpy(y.storage, y.offset, x.storage, x.offset, 1e-3, n);
  run();
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    run();
    best = Math.min(best, (performance.now() - t0) / 1e3);
  }
  x.dispose();
  y.dispose();
  return (3 * n * 4) / best / 1e9;
}

const cfg = preset(presetName).config;
console.log(`# infer: ${presetName} f32, ${threads} threads, ${runtimeInfo().simd}, load average ${loadavg()[0]!.toFixed(1)} ` +
  '(peers with spinning thread pools, llama.cpp and torch, slow down far more than ours on a busy machine)');
const model = new LlamaForCausalLM(cfg, { seed: 1 });
const params = model.parameters().reduce((a, p) => a + p.size, 0);
// Per decode token: every matrix once; the embedding table only for one row unless tied (then
// it is also the output layer, read whole).
const embed = cfg.vocabSize * cfg.dim;
const weightBytes = 4 * (cfg.tieEmbeddings ? params : params - embed + cfg.dim);
const kvPerToken = kvBytesPerToken({ nLayers: cfg.nLayers, nKvHeads: cfg.nKvHeads, headDim: cfg.dim / cfg.nHeads });
const prompt = Array.from({ length: 16 }, (_, i) => 1 + ((i * 7919) % (cfg.vocabSize - 1)));
const engine = new Engine(model, { kvCacheBytes: 64 * (16 + nNew + 16) * kvPerToken * 1.2, maxNumSeqs: 64, maxNumBatchedTokens: 1024 });

/** Decode tokens/s of one request: time from its first token to its last. */
async function singleStream(): Promise<number> {
  let t0 = 0;
  let n = 0;
  for await (const d of engine.generate(prompt, { maxTokens: nNew + 1, ignoreEos: true })) {
    if (n++ === 0) t0 = performance.now();
    if (d.finishReason) return (n - 1) / ((performance.now() - t0) / 1e3);
  }
  throw new Error('unreachable');
}

/**
 * Generated tokens/s over all of `k` concurrent requests: over the whole run (prefill
 * included), and over the decode phase (from the moment every request has its first token).
 */
async function aggregate(k: number): Promise<[number, number]> {
  const t0 = performance.now();
  let started = 0;
  let tDecode = 0;
  let afterDecodeStart = 0;
  let total = 0;
  await Promise.all(Array.from({ length: k }, async (_, i) => {
    let first = true;
    for await (const d of engine.generate(prompt.map((t) => (t + i) % cfg.vocabSize), { maxTokens: nNew, ignoreEos: true })) {
      total += d.tokens.length;
      if (tDecode > 0) afterDecodeStart += d.tokens.length;
      if (first && ++started === k) tDecode = performance.now();
      first = false;
    }
  }));
  const t1 = performance.now();
  return [total / ((t1 - t0) / 1e3), afterDecodeStart / ((t1 - tDecode) / 1e3)];
}

await singleStream(); // warm-up

let hf: number | null = null;
let hfThreads = 0;
let hfWhy = '--no-peers';
if (!noPeers) {
  const py = findPython(['torch', 'transformers']);
  hfWhy = py.why;
  if (py.python) {
    const dir = mkdtempSync(join(tmpdir(), 'pg-bench-infer-'));
    try {
      await savePretrained(model, dir, { dtype: 'f32' });
      const code = `
import json, time, torch
from transformers import LlamaForCausalLM
m = LlamaForCausalLM.from_pretrained(${JSON.stringify(dir)}, dtype=torch.float32).eval()
ids = torch.tensor([${JSON.stringify(prompt)}])
mask = torch.ones_like(ids)
def run(n):
    t0 = time.perf_counter()
    with torch.no_grad():
        m.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return time.perf_counter() - t0
out = []
for t in sorted({1, ${threads}}):
    torch.set_num_threads(t)
    run(4)
    best = min(run(${nNew + 1}) - run(1) for _ in range(2))
    out.append((${nNew} / best, t))
tps, t = max(out)
print(json.dumps({"tps": tps, "threads": t}))
`;
      writeFileSync(join(dir, 'bench.py'), code);
      const out = execFileSync(py.python, [join(dir, 'bench.py')], { encoding: 'utf8', env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'ignore'] });
      const r = JSON.parse(out.trim().split('\n').pop()!) as { tps: number; threads: number };
      hf = r.tps;
      hfThreads = r.threads;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

/** One decode run of node-llama-cpp at `threads` threads: tokens/s. */
type LlamaRun = (threads: number) => Promise<number>;
/**
 * node-llama-cpp on our GGUF export, loaded once at 1 and at `threads` threads, or the reason
 * there is none; `close` frees it.
 */
async function loadLlamaCpp(): Promise<{ run: LlamaRun; close: () => Promise<void> } | string> {
  if (noPeers) return '--no-peers';
  if (cfg.vocabSize !== 32000) return 'needs the LLaMA-2 vocabulary for the GGUF tokenizer';
  let nlc: Record<string, unknown> | null = null;
  for (const c of [process.env.PATENTGPT_NODE_LLAMA_CPP, join(packageRoot(), 'build-peers', 'node_modules', 'node-llama-cpp'), 'node-llama-cpp']) {
    if (!c || (c !== 'node-llama-cpp' && !existsSync(c))) continue;
    try {
      nlc = (await import(c === 'node-llama-cpp' ? c : pathToFileURL(join(c, 'dist', 'index.js')).href)) as Record<string, unknown>;
      break;
    } catch {
      /* next */
    }
  }
  if (!nlc) return 'node-llama-cpp not installed';
  const dir = mkdtempSync(join(tmpdir(), 'pg-bench-gguf-'));
  const path = join(dir, 'model.gguf');
  await exportGguf(model, SentencePieceTokenizer.llama2(), path);
  type Seq = { evaluate(tokens: number[], o: object): AsyncGenerator<number> };
  type Ctx = { getSequence(): Seq; dispose(): Promise<void> };
  type Model = { createContext(o: object): Promise<Ctx>; dispose(): Promise<void> };
  type Llama = { loadModel(o: object): Promise<Model>; dispose(): Promise<void> };
  const getLlama = nlc.getLlama as (o: object) => Promise<Llama>;
  const loaded = new Map<number, [Llama, Model]>();
  for (const t of [...new Set([1, threads])]) {
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: t });
    loaded.set(t, [llama, await llama.loadModel({ modelPath: path })]);
  }
  const run: LlamaRun = async (t) => {
    const ctx = await loaded.get(t)![1].createContext({ contextSize: 256, threads: t, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
    let n = 0;
    let t0 = 0;
    for await (const _ of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
      if (n++ === 0) t0 = performance.now();
      if (n === nNew + 1) break;
    }
    const tps = nNew / ((performance.now() - t0) / 1e3);
    await ctx.dispose();
    return tps;
  };
  const close = async (): Promise<void> => {
    for (const [llama, lm] of loaded.values()) {
      await lm.dispose();
      await llama.dispose();
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { run, close };
}

// Single stream, the triad and node-llama-cpp in interleaved rounds, each reported at its best:
// on a shared machine, a round that another process slowed down says nothing about either side.
// Spin-waiting thread pools collapse when the cores are shared (2 threads on a busy 2-core
// machine ran 20x slower than 1): llama.cpp is measured at 1 and at `threads` threads.
const rounds = Number(arg('rounds', '4'));
const peer = await loadLlamaCpp();
let bandwidth = 0;
let ours = 0;
let lcppBest = 0;
let llamaThreads = 0;
for (let r = 0; r < rounds; r++) {
  bandwidth = Math.max(bandwidth, triadGBs());
  ours = Math.max(ours, await singleStream());
  if (typeof peer !== 'string')
    for (const t of [...new Set([1, threads])]) {
      const tps = await peer.run(t);
      if (r > 0 && tps > lcppBest) [lcppBest, llamaThreads] = [tps, t]; // round 0 warms it up
    }
}
if (typeof peer !== 'string') await peer.close();
const lcpp: number | string = typeof peer === 'string' ? peer : lcppBest;
const bound = (bandwidth * 1e9) / weightBytes;

const agg: Record<number, number> = {};
const aggDecode: Record<number, number> = {};
// Best of two interleaved passes, for the same reason as above.
for (let r = 0; r < 2; r++)
  for (const k of streams) {
    const [whole, decode] = await aggregate(k);
    agg[k] = Math.max(agg[k] ?? 0, whole);
    aggDecode[k] = Math.max(aggDecode[k] ?? 0, decode);
  }
engine.close();

/** Event-loop delay of this thread (ms: p99, max) while `k` requests run on `e`. */
async function loopDelay(e: { complete: Engine['complete'] }, k: number): Promise<[number, number]> {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  await Promise.all(Array.from({ length: k }, (_, i) => e.complete(prompt.map((t) => (t + i) % cfg.vocabSize), { maxTokens: 16, ignoreEos: true })));
  h.disable();
  return [h.percentile(99) / 1e6, h.max / 1e6];
}
const inThread = new Engine(model, { kvCacheBytes: 32 * 64 * kvPerToken });
const delayEngine = await loopDelay(inThread, 16);
inThread.close();
const threaded = await ThreadedEngine.fromModel(model, { kvCacheBytes: 32 * 64 * kvPerToken });
const delayThreaded = await loopDelay(threaded, 16);
await threaded.close();

const f = (x: number, d = 1): string => x.toFixed(d);
console.log(`\nsingle stream decode (${nNew} tokens after a ${prompt.length}-token prompt)`);
console.log('| what | tokens/s | ratio |');
console.log('|---|---:|---:|');
console.log(`| patentgpt engine | ${f(ours)} | 1.00 |`);
console.log(`| node-llama-cpp (llama.cpp, our GGUF f32, f32 KV, best of 1/${threads} threads: ${llamaThreads}) | ${typeof lcpp === 'string' ? `skipped (${lcpp})` : f(lcpp)} | ${typeof lcpp === 'string' ? '-' : f(ours / lcpp, 2) + 'x ours/theirs'} |`);
console.log(`| transformers generate() (best of 1/${threads} threads: ${hfThreads}) | ${hf === null ? `skipped (${hfWhy})` : f(hf)} | ${hf === null ? '-' : f(ours / hf, 2) + 'x ours/theirs'} |`);
console.log(`| bandwidth bound (${f(bandwidth)} GB/s triad / ${f(weightBytes / 2 ** 20, 0)} MiB per token) | ${f(bound)} | ${f(ours / bound, 2)} of bound |`);
console.log(`\naggregate throughput (${prompt.length}-token prompts, ${nNew} new tokens each)`);
console.log('| concurrent requests | tokens/s, whole run | vs 1 stream | tokens/s, decode phase | vs 1 stream |');
console.log('|---:|---:|---:|---:|---:|');
for (const k of streams)
  console.log(`| ${k} | ${f(agg[k]!)} | ${f(agg[k]! / agg[streams[0]!]!, 2)}x | ${f(aggDecode[k]!)} | ${f(aggDecode[k]! / aggDecode[streams[0]!]!, 2)}x |`);
console.log('\nmain-thread event-loop delay while 16 requests generate');
console.log('| engine | p99 ms | max ms |');
console.log('|---|---:|---:|');
console.log(`| Engine (steps on this thread) | ${f(delayEngine[0])} | ${f(delayEngine[1])} |`);
console.log(`| ThreadedEngine (steps in a worker) | ${f(delayThreaded[0])} | ${f(delayThreaded[1])} |`);
console.log(`\nKV cache: ${kvPerToken} bytes per token (${cfg.nLayers} layers x K,V x ${cfg.nKvHeads} heads x ${cfg.dim / cfg.nHeads} x f32)`);
console.log(JSON.stringify({
  bench: 'infer', preset: presetName, threads, params, weightBytes, triadGBs: bandwidth, boundTps: bound, singleStreamTps: ours,
  fractionOfBound: ours / bound, llamaCppTps: typeof lcpp === 'string' ? null : lcpp,
  vsLlamaCpp: typeof lcpp === 'string' ? null : ours / lcpp, llamaCppThreads: llamaThreads, transformersThreads: hfThreads, transformersTps: hf, vsTransformers: hf === null ? null : ours / hf, aggregateTps: agg, aggregateDecodeTps: aggDecode,
  kvBytesPerToken: kvPerToken, loopDelayMs: { engine: delayEngine, threaded: delayThreaded }, loadAverage: loadavg()[0],
}));
