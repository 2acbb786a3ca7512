// Weight-only quantized decode for `npm run bench -- infer` (its "quantized single stream" table;
// alone with --quant-only): for q8_0, q4_0, bf16 and f16, our engine on the model quantized in memory
// (quantizeModel: the blocks our GGUF holds) beside node-llama-cpp on that GGUF (same types per
// tensor, f32 KV, same prompt and thread counts) and beside the bandwidth bound of the quantized
// bytes a decode step reads (the GGUF's tensors: every matrix's blocks and the norms, one row of
// the token embedding unless it is also the head). Each side at 1 and `threads` threads, in
// interleaved rounds with the triad, each at its best (a shared machine: min-of-N).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportGguf } from '../../src/export/gguf.js';
import { ggmlTypeBytes, readGgufFile } from '../../src/models/gguf-read.js';
import { Engine, kvBytesPerToken, quantizeModel } from '../../src/infer/index.js';
import { LlamaForCausalLM } from '../../src/models/index.js';
import { setNumThreads, type QuantType } from '../../src/tensor/index.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/index.js';
import { importNodeLlamaCpp, loadLlamaCppDecoder } from './_llamacpp.js';

export interface QuantRow {
  type: QuantType;
  /** Bytes a decode step reads. */
  bytesPerStep: number;
  tps: number;
  threads: number;
  llamaCppTps: number | null;
  llamaCppThreads: number;
  llamaCppWhy: string | null;
  triadGBs: number;
  boundTps: number;
}

/** Bytes of weights one decode step reads from a GGUF (see the file's comment). */
async function stepBytes(path: string, tied: boolean): Promise<number> {
  const g = await readGgufFile(path);
  let total = 0;
  for (const [name, t] of g.tensors) {
    const n = t.dims.reduce((a, d) => a * d, 1);
    total += name === 'token_embd.weight' && !tied ? ggmlTypeBytes(t.type, t.dims[0]!) : ggmlTypeBytes(t.type, n);
  }
  return total;
}

export async function quantRows(model: LlamaForCausalLM, opts: {
  types: QuantType[]; threads: number; newTokens: number; rounds: number; noPeers: boolean; triadGBs: () => number;
}): Promise<QuantRow[]> {
  const cfg = model.config;
  const prompt = Array.from({ length: 16 }, (_, i) => 1 + ((i * 7919) % (cfg.vocabSize - 1)));
  const weights = model.namedParameters().map(([n, t]) => [n, t.toArray() as Float32Array] as const);
  const nlc = opts.noPeers ? '--no-peers' : cfg.vocabSize !== 32000 ? 'needs the LLaMA-2 vocabulary for the GGUF tokenizer' : await importNodeLlamaCpp();
  const dir = mkdtempSync(join(tmpdir(), 'pg-bench-quant-'));
  const rows: QuantRow[] = [];
  try {
    for (const type of opts.types) {
      const path = join(dir, `${type}.gguf`);
      await exportGguf(model, SentencePieceTokenizer.llama2(), path, { dtype: type });
      const q = new LlamaForCausalLM(cfg, { init: 'zeros' });
      const params = new Map(q.namedParameters());
      for (const [n, w] of weights) params.get(n)!.write(w);
      quantizeModel(q, type);
      const perToken = kvBytesPerToken({ nLayers: cfg.nLayers, nKvHeads: cfg.nKvHeads, headDim: cfg.dim / cfg.nHeads });
      const engine = new Engine(q, { kvCacheBytes: 4 * (prompt.length + opts.newTokens + 32) * perToken });
      const single = async (): Promise<number> => {
        let t0 = 0, n = 0;
        for await (const d of engine.generate(prompt, { maxTokens: opts.newTokens + 1, ignoreEos: true })) {
          if (n++ === 0) t0 = performance.now();
          if (d.finishReason) return (n - 1) / ((performance.now() - t0) / 1e3);
        }
        return 0;
      };
      const decoder = typeof nlc === 'string' ? null : await loadLlamaCppDecoder(nlc, path, [1, opts.threads], prompt, opts.newTokens);
      const row: QuantRow = {
        type, bytesPerStep: await stepBytes(path, cfg.tieEmbeddings), tps: 0, threads: 0, llamaCppTps: null, llamaCppThreads: 0,
        llamaCppWhy: typeof nlc === 'string' ? nlc : null, triadGBs: 0, boundTps: 0,
      };
      await single(); // warm-up
      for (let r = 0; r < opts.rounds; r++) {
        row.triadGBs = Math.max(row.triadGBs, opts.triadGBs());
        for (const t of [...new Set([1, opts.threads])]) {
          setNumThreads(t);
          const tps = await single();
          if (tps > row.tps) [row.tps, row.threads] = [tps, t];
        }
        setNumThreads(opts.threads);
        if (decoder)
          for (const t of [...new Set([1, opts.threads])]) {
            const tps = await decoder.decode(t);
            if (r > 0 && tps > (row.llamaCppTps ?? 0)) [row.llamaCppTps, row.llamaCppThreads] = [tps, t]; // round 0 warms it up
          }
      }
      row.boundTps = (row.triadGBs * 1e9) / row.bytesPerStep;
      await decoder?.close();
      engine.close();
      q.dispose();
      rows.push(row);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export function printQuantRows(rows: QuantRow[], newTokens: number): void {
  const f = (x: number, d = 1): string => x.toFixed(d);
  console.log(`\nquantized single stream decode (${newTokens} tokens after a 16-token prompt; weights quantized, activations and KV f32)`);
  console.log('| type | MiB read per token | patentgpt tokens/s | node-llama-cpp tokens/s (same GGUF) | ours / llama.cpp | bound (triad / bytes) | ours / bound |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(`| ${r.type} | ${f(r.bytesPerStep / 2 ** 20)} | ${f(r.tps)} (${r.threads} thr) | ${r.llamaCppTps === null ? `skipped (${r.llamaCppWhy ?? 'not run'})` : `${f(r.llamaCppTps)} (${r.llamaCppThreads} thr)`} | ` +
      `${r.llamaCppTps === null ? '-' : f(r.tps / r.llamaCppTps, 2) + 'x'} | ${f(r.boundTps)} (${f(r.triadGBs)} GB/s) | ${f(r.tps / r.boundTps, 2)} |`);
}
