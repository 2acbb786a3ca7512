// node-llama-cpp (prebuilt llama.cpp) as a decode peer on a GGUF file, for the infer and moe
// benches and the GGUF tests. Found at PATENTGPT_NODE_LLAMA_CPP, build-peers/node_modules/node-llama-cpp
// (npm install --prefix build-peers --ignore-scripts node-llama-cpp with
// NODE_LLAMA_CPP_SKIP_DOWNLOAD=true), or the package. Loaded with gpu: false, build: 'never',
// fed token ids (string prompts drop the space after BOS), f32 KV cache, greedy.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../src/package.js';
import { missingPeer } from './_peers.js';

export type Seq = { evaluate(tokens: number[], o: object): AsyncGenerator<number>; clearHistory(): Promise<void> };
export type Ctx = { getSequence(): Seq; dispose(): Promise<void> };
export type Model = { createContext(o: object): Promise<Ctx>; dispose(): Promise<void> };
export type Llama = { loadModel(o: object): Promise<Model>; dispose(): Promise<void> };

/** The node-llama-cpp module, or the reason there is none (throws where peers are required). */
export async function importNodeLlamaCpp(): Promise<{ getLlama: (o: object) => Promise<Llama> } | string> {
  for (const c of [process.env.PATENTGPT_NODE_LLAMA_CPP, join(packageRoot(), 'build-peers', 'node_modules', 'node-llama-cpp'), 'node-llama-cpp']) {
    if (!c || (c !== 'node-llama-cpp' && !existsSync(c))) continue;
    try {
      const m = (await import(c === 'node-llama-cpp' ? c : pathToFileURL(join(c, 'dist', 'index.js')).href)) as Record<string, unknown>;
      if (typeof m.getLlama === 'function') return { getLlama: m.getLlama as (o: object) => Promise<Llama> };
    } catch {
      /* next */
    }
  }
  return missingPeer('node-llama-cpp not installed (see scripts/install-peers.sh)');
}

/** A GGUF loaded at each of `threads`; decode(t) times `newTokens` greedy tokens after `prompt`. */
export interface LlamaCppDecoder {
  /** Decode tokens/s at `t` threads (the time from the first generated token to the last). */
  decode(t: number): Promise<number>;
  close(): Promise<void>;
}

export async function loadLlamaCppDecoder(
  nlc: { getLlama: (o: object) => Promise<Llama> }, path: string, threads: readonly number[], prompt: readonly number[], newTokens: number,
): Promise<LlamaCppDecoder> {
  const loaded = new Map<number, [Llama, Model]>();
  for (const t of new Set(threads)) {
    const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: 'error', maxThreads: t });
    loaded.set(t, [llama, await llama.loadModel({ modelPath: path })]);
  }
  return {
    async decode(t) {
      const ctx = await loaded.get(t)![1].createContext({
        contextSize: Math.max(256, prompt.length + newTokens + 16), threads: t,
        experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
      });
      let n = 0;
      let t0 = 0;
      for await (const _ of ctx.getSequence().evaluate([...prompt], { temperature: 0 })) {
        if (n++ === 0) t0 = performance.now();
        if (n === newTokens + 1) break;
      }
      const tps = newTokens / ((performance.now() - t0) / 1e3);
      await ctx.dispose();
      return tps;
    },
    async close() {
      for (const [llama, m] of loaded.values()) {
        await m.dispose();
        await llama.dispose();
      }
    },
  };
}
