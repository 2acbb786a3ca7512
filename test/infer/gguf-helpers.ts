// Test helpers for GGUF exports: an independent little GGUF reader (header, metadata, tensor
// table, data section) and greedy decoding by node-llama-cpp (prebuilt llama.cpp) on a file,
// found as the benches find it (scripts/bench/_llamacpp.ts).
import { expect, type TestContext } from 'vitest';
import { importNodeLlamaCpp, type Llama } from '../../scripts/bench/_llamacpp.js';
import { exportGguf } from '../../src/export/gguf.js';
import type { LlamaForCausalLM } from '../../src/models/index.js';
import type { SentencePieceTokenizer } from '../../src/tokenizer/index.js';

export interface GgufTensor {
  /** Dims innermost first. */
  dims: number[];
  /** GGML type (0 f32, 1 f16). */
  type: number;
  /** Offset in the data section. */
  offset: number;
}

export interface Gguf {
  kv: Map<string, unknown>;
  tensors: Map<string, GgufTensor>;
  dataStart: number;
  bytes: Uint8Array;
}

export function readGguf(bytes: Uint8Array): Gguf {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const u32 = (): number => ((o += 4), v.getUint32(o - 4, true));
  const u64 = (): number => ((o += 8), Number(v.getBigUint64(o - 8, true)));
  const str = (): string => {
    const n = u64();
    o += n;
    return new TextDecoder().decode(bytes.subarray(o - n, o));
  };
  const value = (t: number): unknown => {
    switch (t) {
      case 4: return u32();
      case 5: return ((o += 4), v.getInt32(o - 4, true));
      case 6: return ((o += 4), v.getFloat32(o - 4, true));
      case 7: return bytes[o++] === 1;
      case 8: return str();
      case 9: {
        const et = u32();
        const n = u64();
        return Array.from({ length: n }, () => value(et));
      }
      default: throw new Error(`type ${t}`);
    }
  };
  expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('GGUF');
  o = 4;
  expect(u32()).toBe(3);
  const nt = u64();
  const nkv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nkv; i++) {
    const k = str();
    kv.set(k, value(u32()));
  }
  const tensors = new Map<string, GgufTensor>();
  for (let i = 0; i < nt; i++) {
    const name = str();
    const nd = u32();
    const dims = Array.from({ length: nd }, () => u64());
    tensors.set(name, { dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(o / 32) * 32;
  return { kv, tensors, dataStart, bytes };
}

/** A tensor's raw bytes (f32: 4 per element, f16: 2). */
export function tensorBytes(g: Gguf, name: string): Uint8Array {
  const t = g.tensors.get(name);
  if (!t) throw new Error(`no tensor ${name} in the GGUF file`);
  const n = t.dims.reduce((a, d) => a * d, 1) * (t.type === 1 ? 2 : 4);
  return g.bytes.slice(g.dataStart + t.offset, g.dataStart + t.offset + n);
}

/** Greedy continuations of `prompts` (token ids, BOS included) by llama.cpp on a GGUF file. */
export type LlamaCppGreedy = (modelPath: string, prompts: readonly number[][], maxTokens: number) => Promise<number[][]>;

let llamaOnce: Promise<Llama> | undefined;

/**
 * node-llama-cpp's greedy decoding (CPU, f32 KV cache, flash attention off, token ids in: its
 * string prompts drop the space after BOS), or the reason it cannot load; where peers are
 * required (CI) a missing node-llama-cpp throws instead.
 * Flash attention off: node-llama-cpp's default ('auto') turns llama.cpp's flash attention on for
 * the CPU, and that graph casts K and V to f16 even from an f32 cache (llama-graph.cpp
 * build_attn_mha), rounds q to f16 for the q.k dots and sums p.v in an f16 accumulator
 * (ggml-cpu ops.cpp flash_attn_ext_f16_one_chunk). Off, its attention is f32 from the f32 cache
 * (kq, softmax, kqv), as ours is.
 */
export async function loadLlamaCppGreedy(): Promise<LlamaCppGreedy | string> {
  const nlc = await importNodeLlamaCpp();
  if (typeof nlc === 'string') return nlc;
  const { getLlama } = nlc;
  // One llama.cpp backend per test process (getLlama took 0.7-0.9 s a call, once per model of the
  // parity tests: 54 calls in quant-engine.test.ts); each model and context is disposed after use,
  // and the process exits with the backend loaded.
  llamaOnce ??= getLlama({ gpu: false, build: 'never', logLevel: 'error' });
  const llama = await llamaOnce;
  return async (modelPath, prompts, maxTokens) => {
    const model = await llama.loadModel({ modelPath });
    const context = await model.createContext({ contextSize: 256, threads: 2, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32', flashAttention: false });
    const seq = context.getSequence();
    const out: number[][] = [];
    for (const p of prompts) {
      await seq.clearHistory();
      const toks: number[] = [];
      for await (const t of seq.evaluate([...p], { temperature: 0 })) {
        toks.push(t);
        if (toks.length === maxTokens) break;
      }
      out.push(toks);
    }
    await context.dispose();
    await model.dispose();
    return out;
  };
}

/**
 * The llama.cpp parity tests' start: node-llama-cpp's greedy decoding (loadLlamaCppGreedy) and
 * `model` exported (f32) to `path`; where node-llama-cpp cannot load it warns why and skips the
 * test (null: the caller returns).
 */
export async function greedyOnExport(ctx: TestContext, model: LlamaForCausalLM, tok: SentencePieceTokenizer, path: string): Promise<LlamaCppGreedy | null> {
  const greedy = await loadLlamaCppGreedy(); // throws where peers are required (CI)
  if (typeof greedy === 'string') {
    console.warn(`skipped: ${greedy}`);
    ctx.skip();
    return null;
  }
  await exportGguf(model, tok, path);
  return greedy;
}

/**
 * Index of the first element whose bits differ (-1: bitwise equal; the shorter length when the
 * lengths differ): vitest's deep equality and its failure diff are slow on tens of thousands.
 */
export function firstDiff(a: Float32Array | Uint16Array, b: Float32Array | Uint16Array): number {
  const bits = (x: Float32Array | Uint16Array): Uint32Array | Uint16Array =>
    x instanceof Float32Array ? new Uint32Array(x.buffer, x.byteOffset, x.length) : x;
  const x = bits(a);
  const y = bits(b);
  if (x.length !== y.length) return Math.min(x.length, y.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/**
 * Where greedy continuation `ours` first leaves `theirs` (-1: never, over the shorter length), and
 * our top-2 logit gap at that step (`gaps[i]`: top-1 minus top-2 logit at step i; 0 when they
 * agree throughout): a small gap there is a genuine near-tie, which last-bit differences in
 * either implementation may break either way.
 */
export function greedyParity(ours: readonly number[], gaps: readonly number[], theirs: readonly number[]): { firstDiff: number; gap: number } {
  const n = Math.min(ours.length, theirs.length);
  for (let i = 0; i < n; i++) if (ours[i] !== theirs[i]) return { firstDiff: i, gap: gaps[i] ?? Infinity };
  return { firstDiff: ours.length === theirs.length ? -1 : n, gap: ours.length === theirs.length ? 0 : Infinity };
}
