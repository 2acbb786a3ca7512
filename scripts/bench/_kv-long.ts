// The KV cache's element type at long context, for `npm run bench -- infer` (its "long-context
// decode" table; alone with --kv-only): single-stream decode tokens/s after a prompt of
// `context` tokens with an f32, a bf16 and an f16 cache. At long context a decode step reads the
// whole cache besides the weights, so a 16-bit cache (half the bytes) should be faster by about
// (weights + f32 KV) / (weights + f32 KV / 2) per token. Each cache type has its own engine; the
// prompt is computed once per engine (later runs hit the prefix cache), and the types take turns
// for `rounds` rounds, each keeping its best (robust to other processes' load).
import { Engine, kvBytesPerToken } from '../../src/infer/index.js';
import type { LlamaForCausalLM } from '../../src/models/index.js';
import type { KvCacheDType } from '../../src/tensor/index.js';

export interface LongContextKvRow {
  dtype: KvCacheDType;
  tps: number;
  kvBytesPerToken: number;
  /** Bytes a decode step reads: the weights, and the cache of `context` tokens. */
  bytesPerStep: number;
}

/** Decode tokens/s at `context` tokens of context for each cache type (best of `rounds`). */
export async function longContextKv(model: LlamaForCausalLM, weightBytes: number, opts: { context: number; newTokens: number; rounds: number }): Promise<LongContextKvRow[]> {
  const cfg = model.config;
  const { context, newTokens } = opts;
  const prompt = Array.from({ length: context }, (_, i) => 1 + ((i * 7919) % (cfg.vocabSize - 1)));
  const dtypes: KvCacheDType[] = ['f32', 'bf16', 'f16'];
  const rows = dtypes.map((dtype) => {
    const perToken = kvBytesPerToken({ nLayers: cfg.nLayers, nKvHeads: cfg.nKvHeads, headDim: cfg.dim / cfg.nHeads, bytesPerElement: dtype === 'f32' ? 4 : 2 });
    const total = context + newTokens + 16;
    const engine = new Engine(model, { kvCacheBytes: Math.ceil(total * 1.2) * perToken + 64 * perToken, maxModelLen: total, kvCacheDType: dtype, maxNumBatchedTokens: 512 });
    return { dtype, engine, tps: 0, kvBytesPerToken: perToken, bytesPerStep: weightBytes + perToken * (context + newTokens / 2) };
  });
  /** Decode tokens/s of one request: from its first token to its last. */
  const decodeTps = async (engine: Engine): Promise<number> => {
    let t0 = 0, n = 0;
    for await (const d of engine.generate(prompt, { maxTokens: newTokens + 1, ignoreEos: true })) {
      if (n === 0) t0 = performance.now();
      n += d.tokens.length;
      if (d.finishReason) return (n - 1) / ((performance.now() - t0) / 1e3);
    }
    throw new Error('unreachable');
  };
  try {
    for (const r of rows) await decodeTps(r.engine); // the prompt into each cache (and warm-up)
    for (let round = 0; round < opts.rounds; round++)
      for (const r of rows) r.tps = Math.max(r.tps, await decodeTps(r.engine));
  } finally {
    for (const r of rows) r.engine.close();
  }
  return rows.map(({ dtype, tps, kvBytesPerToken: b, bytesPerStep }) => ({ dtype, tps, kvBytesPerToken: b, bytesPerStep }));
}

/** The table of longContextKv's rows, the f32 cache as the baseline. */
export function printLongContextKv(rows: LongContextKvRow[], context: number, newTokens: number): void {
  const f32 = rows.find((r) => r.dtype === 'f32')!;
  console.log(`\nlong-context decode: KV cache element type (${newTokens} tokens after a ${context}-token prompt, one stream)`);
  console.log('| KV cache | bytes per token | MiB read per step (weights + cache) | tokens/s | vs f32 cache | expected from bytes |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(`| ${r.dtype} | ${r.kvBytesPerToken} | ${(r.bytesPerStep / 2 ** 20).toFixed(0)} | ${r.tps.toFixed(2)} | ${(r.tps / f32.tps).toFixed(2)}x | ${(f32.bytesPerStep / r.bytesPerStep).toFixed(2)}x |`);
}
