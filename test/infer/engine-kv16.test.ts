// The engine's 16-bit KV cache (kvCacheDType 'bf16' | 'f16'): next-token logits along the same
// tokens stay within the 16-bit tolerance of the f32 cache's (prefill chunks over a cached prefix,
// the fused decode path, contexts spanning several attention partitions); greedy output on the
// transformers-checked fixture is unchanged; a budget holds twice the tokens in the same bytes;
// the option is validated and reaches the threaded engine.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockPool } from '../../src/infer/blocks.js';
import { ModelRunner } from '../../src/infer/runner.js';
import { Engine, ThreadedEngine } from '../../src/infer/index.js';
import { LlamaForCausalLM, loadPretrained, preset, validateConfig } from '../../src/models/index.js';
import type { KvCacheDType } from '../../src/tensor/index.js';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const golden = JSON.parse(readFileSync(join(fixtures, 'infer-tiny-golden.json'), 'utf8')) as { prompts: number[][]; outputs: number[][] };

// Head size 64 (the kernels' vector path), two query heads sharing one key/value head.
const cfg = validateConfig({ ...preset('tiny').config, dim: 128, nHeads: 2, nKvHeads: 1, maxSeqLen: 1024 });

function argmax(x: Float32Array): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[b]!) b = i;
  return b;
}

/**
 * Next-token logits of one sequence through a runner whose caches hold `dtype`: after its prompt
 * (the first promptLen tokens, in chunks of `chunk`), then after each further token, one a step.
 * Past the end of `tokens` the greedy choice is appended to it, up to `total` tokens.
 */
function stepLogits(model: LlamaForCausalLM, dtype: KvCacheDType, tokens: number[], promptLen: number, chunk: number, total = tokens.length): Float32Array[] {
  const pool = new BlockPool(64, 16);
  const runner = new ModelRunner(model, { numBlocks: 64, blockSize: 16, partitionSize: 64, kvCacheDType: dtype });
  const { table } = pool.allocatePrefix(0, tokens.slice(0, promptLen));
  const out: Float32Array[] = [];
  try {
    for (let done = 0; done < total;) {
      const end = done < promptLen ? Math.min(promptLen, done + chunk) : done + 1;
      const seen = tokens.slice(0, end); // the runner returns logits where a chunk ends its tokens
      pool.prepareWrite(table, done, end);
      const [logits] = runner.step([{ tokens: seen, start: done, end, table }]);
      pool.markComputed(table, seen, end);
      done = end;
      if (!logits || done < promptLen) continue;
      out.push(logits.slice());
      if (done < total && tokens.length === done) tokens.push(argmax(logits));
    }
  } finally {
    runner.close();
  }
  return out;
}

/** Largest |a - b| over two rows of logits. */
function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

/** Largest |logit|. */
function scaleOf(x: Float32Array): number {
  let m = 0;
  for (const v of x) m = Math.max(m, Math.abs(v));
  return m;
}

/** The gap between the largest and the second-largest logit. */
function topGap(x: Float32Array): number {
  const b = argmax(x);
  let second = -Infinity;
  for (let i = 0; i < x.length; i++) if (i !== b) second = Math.max(second, x[i]!);
  return x[b]! - second;
}

describe('Engine with a 16-bit KV cache', () => {
  it('logits along the same tokens stay within the 16-bit tolerance of the f32 cache (prefill chunks, fused decode, 4+ partitions)', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 5, initStd: 0.08 });
    const promptLen = 300, decode = 24;
    const tokens = Array.from({ length: promptLen }, (_, i) => (i * 37 + 11) % 256);
    // The f32 cache's greedy continuation, then each 16-bit cache fed the same tokens.
    const ref = stepLogits(model, 'f32', tokens, promptLen, 100, promptLen + decode);
    expect(ref.length).toBe(decode + 1);
    expect(tokens.length).toBe(promptLen + decode);
    let scale = 0;
    for (const l of ref) for (const x of l) scale = Math.max(scale, Math.abs(x));
    for (const [dtype, tol] of [['bf16', 2e-2], ['f16', 3e-3]] as const) {
      const got = stepLogits(model, dtype, tokens, promptLen, 100, tokens.length);
      expect(got.length).toBe(ref.length);
      let diff = 0, agree = 0;
      got.forEach((l, s) => {
        diff = Math.max(diff, maxDiff(l, ref[s]!));
        agree += Number(argmax(l) === argmax(ref[s]!));
      });
      expect(diff / scale, `${dtype}: max |logit diff| ${diff} of logits up to ${scale}`).toBeLessThan(tol);
      expect(diff).toBeGreaterThan(0); // the cache really holds rounded keys and values
      expect(agree, `${dtype}: greedy choices equal to the f32 cache's`).toBeGreaterThanOrEqual(decode);
    }
    model.dispose();
  }, 120_000);

  it('on the transformers-checked fixture: f16 greedy output is the golden one; bf16 keeps every choice the rounding cannot flip', async () => {
    const model = await loadPretrained(join(fixtures, 'infer-tiny-f32'));
    // f16 (11 bits of mantissa): all 64 tokens of every prompt, batched with chunked prefill.
    const engine = new Engine(model, { kvCacheBytes: 2 ** 21, maxNumBatchedTokens: 48, kvCacheDType: 'f16' });
    const out = await Promise.all(golden.prompts.map(async (p) => (await engine.complete(p, { maxTokens: 64, ignoreEos: true })).tokens));
    engine.close();
    expect(out).toEqual(golden.outputs);
    // bf16 (8 bits) flips near-ties (the golden path has gaps down to 0.002): along the golden
    // tokens, every step whose f32 top-2 gap exceeds twice the bf16 cache's logit error keeps its choice.
    let kept = 0, largest = 0;
    golden.prompts.forEach((p, i) => {
      const tokens = [...p, ...golden.outputs[i]!];
      const ref = stepLogits(model, 'f32', tokens, p.length, 16);
      const got = stepLogits(model, 'bf16', tokens, p.length, 16);
      ref.slice(0, 64).forEach((l, s) => {
        expect(argmax(l)).toBe(golden.outputs[i]![s]); // the runner's f32 path is the golden path
        const err = maxDiff(got[s]!, l);
        largest = Math.max(largest, err);
        expect(err / scaleOf(l), `prompt ${i} step ${s}`).toBeLessThan(6e-2); // keys and values rounded by up to 2^-9, through this wide-init model (std 0.3)
        if (topGap(l) > 2 * err) {
          expect(argmax(got[s]!), `prompt ${i} step ${s}`).toBe(argmax(l));
          kept++;
        }
      });
    });
    expect(kept).toBeGreaterThan(200); // of 256 choices
    expect(largest).toBeGreaterThan(0); // the cache really holds rounded keys and values
    model.dispose();
  }, 60_000);

  it('a 16-bit cache holds twice the blocks in the same budget: half the bytes per token (engine stats)', async () => {
    const model = new LlamaForCausalLM(cfg, { seed: 6, initStd: 0.08 });
    const perToken = 2 * cfg.nLayers * cfg.nKvHeads * (cfg.dim / cfg.nHeads) * 4;
    const budget = 40 * 16 * perToken; // 40 blocks of f32
    const stats = (['f32', 'bf16', 'f16'] as const).map((kvCacheDType) => {
      const e = new Engine(model, { kvCacheBytes: budget, kvCacheDType });
      const s = e.stats();
      e.close();
      return s;
    });
    const [f32, bf16, f16] = stats as [typeof stats[0], typeof stats[0], typeof stats[0]];
    expect([f32.kvCacheDType, bf16.kvCacheDType, f16.kvCacheDType]).toEqual(['f32', 'bf16', 'f16']);
    expect(f32.blocks.total).toBe(40);
    expect(f32.kvCacheBytes).toBe(budget);
    for (const s of [bf16, f16]) {
      expect(s.blocks.total).toBe(80);
      expect(s.kvCacheBytes).toBe(budget);
      expect(s.kvCacheBytes / s.blocks.total).toBe(f32.kvCacheBytes / f32.blocks.total / 2);
    }
    // A prompt of 60 blocks does not fit the f32 cache and fits the bf16 one.
    const long = Array.from({ length: 60 * 16 - 4 }, (_, i) => (i * 13 + 1) % 256);
    const small = new Engine(model, { kvCacheBytes: budget, maxModelLen: 1024 });
    await expect(small.complete(long, { maxTokens: 2 })).rejects.toMatchObject({ code: 'E_KV_CACHE_FULL' });
    small.close();
    const half = new Engine(model, { kvCacheBytes: budget, maxModelLen: 1024, kvCacheDType: 'bf16' });
    expect((await half.complete(long, { maxTokens: 2, ignoreEos: true })).tokens).toHaveLength(2);
    half.close();
    model.dispose();
  }, 60_000);

  it('validates kvCacheDType, and the threaded engine (serve) takes it', async () => {
    const model = new LlamaForCausalLM(validateConfig({ ...preset('tiny').config }), { seed: 7, initStd: 0.08 });
    expect(() => new Engine(model, { kvCacheDType: 'f8' as KvCacheDType })).toThrow(/kvCacheDType must be one of f32, bf16, f16, got "f8"/);
    const remote = await ThreadedEngine.fromModel(model, { kvCacheBytes: 2 ** 20, kvCacheDType: 'f16' });
    try {
      expect((await remote.stats()).kvCacheDType).toBe('f16');
      expect((await remote.complete([1, 2, 3], { maxTokens: 4, ignoreEos: true })).tokens).toHaveLength(4);
    } finally {
      await remote.close();
    }
    model.dispose();
  }, 60_000);
});
