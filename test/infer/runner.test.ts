// The model runner's paged steps against a full forward without any cache: logits at every step
// of prefill, chunked prefill, prefix reuse and batched decode equal the last row of
// model.forward(all tokens so far).
import { describe, expect, it } from 'vitest';
import { BlockPool } from '../../src/infer/blocks.js';
import { ModelRunner, type StepItem } from '../../src/infer/runner.js';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';
import { noGrad, scale, type Tensor } from '../../src/tensor/index.js';
import { CountingSwiGLU, expectClose } from '../helpers.js';

const cfg = validateConfig({ ...preset('tiny').config, nHeads: 4, nKvHeads: 2, maxSeqLen: 512 });

function fullLogits(model: LlamaForCausalLM, tokens: number[]): Float32Array {
  return noGrad(() => {
    const out = model.forward({ tokens: Int32Array.from(tokens) });
    const V = cfg.vocabSize;
    const all = out.toArray() as Float32Array;
    out.dispose();
    return all.slice((tokens.length - 1) * V);
  });
}

function argmax(x: Float32Array): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[b]!) b = i;
  return b;
}

describe('ModelRunner', () => {
  it('paged decode logits equal a full forward at every step (batched, chunked, prefix-shared)', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 3, initStd: 0.1 });
    const pool = new BlockPool(64, 4);
    const runner = new ModelRunner(model, { numBlocks: 64, blockSize: 4, partitionSize: 8 });
    const prompts = [
      Array.from({ length: 11 }, (_, i) => (i * 7 + 1) % 256),
      Array.from({ length: 3 }, (_, i) => (i * 13 + 5) % 256),
      Array.from({ length: 27 }, (_, i) => (i * 29 + 2) % 256),
    ];
    // The third prompt shares its first 8 tokens with the first: it reuses two cached blocks.
    prompts[2]!.splice(0, 8, ...prompts[0]!.slice(0, 8));
    const seqs = prompts.map((p) => ({ tokens: [...p], table: null as ReturnType<BlockPool['allocatePrefix']>['table'] | null, done: 0 }));
    let maxErr = 0;
    const check = (tokens: number[], logits: Float32Array): void => {
      const ref = fullLogits(model, tokens);
      expectClose(logits, ref, 1e-4, 1e-4, `logits after ${tokens.length} tokens`);
      for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(logits[i]! - ref[i]!));
    };
    // Step 1: sequence 0 alone, prefill in two chunks (7 then 4 tokens).
    const s0 = seqs[0]!;
    s0.table = pool.allocatePrefix(0, s0.tokens).table;
    pool.prepareWrite(s0.table, 0, 7);
    expect(runner.step([{ tokens: s0.tokens, start: 0, end: 7, table: s0.table }])).toEqual([null]);
    pool.markComputed(s0.table, s0.tokens, 7);
    pool.prepareWrite(s0.table, 7, 11);
    const [l0] = runner.step([{ tokens: s0.tokens, start: 7, end: 11, table: s0.table }]);
    pool.markComputed(s0.table, s0.tokens, 11);
    check(s0.tokens, l0!);
    s0.tokens.push(argmax(l0!));
    s0.done = 11;
    // Sequences 1 (fresh) and 2 (8 tokens from the prefix cache) join sequence 0's decode.
    for (const [i, s] of seqs.entries()) {
      if (i === 0) continue;
      const { table, cachedTokens } = pool.allocatePrefix(i, s.tokens);
      s.table = table;
      s.done = cachedTokens;
    }
    expect(seqs[2]!.done).toBe(8);
    for (let step = 0; step < 12; step++) {
      const items: StepItem[] = seqs.map((s) => {
        pool.prepareWrite(s.table!, s.done, s.tokens.length);
        return { tokens: s.tokens, start: s.done, end: s.tokens.length, table: s.table! };
      });
      const logits = runner.step(items);
      seqs.forEach((s, i) => {
        pool.markComputed(s.table!, s.tokens, s.tokens.length);
        check(s.tokens, logits[i]!);
        s.done = s.tokens.length;
        s.tokens.push(argmax(logits[i]!));
      });
    }
    expect(maxErr).toBeLessThan(1e-4);
    runner.close();
    for (const s of seqs) pool.free(s.table!);
    expect(pool.stats().used).toBe(0);
  });

  it('long contexts split in several partitions still match', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 5, initStd: 0.1 });
    const pool = new BlockPool(40, 16);
    const runner = new ModelRunner(model, { numBlocks: 40, blockSize: 16, partitionSize: 32 });
    const tokens = Array.from({ length: 150 }, (_, i) => (i * 31 + 7) % 256);
    const { table } = pool.allocatePrefix(0, tokens);
    pool.prepareWrite(table, 0, 149);
    runner.step([{ tokens, start: 0, end: 149, table }]);
    pool.prepareWrite(table, 149, 150);
    const [l] = runner.step([{ tokens, start: 149, end: 150, table }]);
    expectClose(l!, fullLogits(model, tokens), 1e-4, 1e-4, 'decode at 150 tokens over 5 partitions');
    runner.close();
  });

  it('decode steps follow weights replaced (setParameter) or changed in place, and longer contexts than the buffers', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 11, initStd: 0.1 });
    const pool = new BlockPool(32, 4);
    // Decode buffers for 12 tokens (3 block-table columns, 2 partitions of 8): longer sequences take the general path.
    const runner = new ModelRunner(model, { numBlocks: 32, blockSize: 4, partitionSize: 8, maxModelLen: 12 });
    /** Prefills all but the last token, then decodes it: the decode step's logits. */
    const run = (tokens: number[]): Float32Array => {
      const { table } = pool.allocatePrefix(0, tokens);
      pool.prepareWrite(table, 0, tokens.length);
      runner.step([{ tokens, start: 0, end: tokens.length - 1, table }]);
      const [l] = runner.step([{ tokens, start: tokens.length - 1, end: tokens.length, table }]);
      pool.free(table);
      return l!;
    };
    const tokens = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => (i * seed + 3) % 256);
    const a = tokens(10, 7);
    expectClose(run(a), fullLogits(model, a), 1e-4, 1e-4, 'before any change');
    const q = model.getParameter('model.layers.0.self_attn.q_proj.weight')!;
    model.setParameter('model.layers.0.self_attn.q_proj.weight', noGrad(() => scale(q, 1.5))); // a new tensor; the old one is disposed
    const b = tokens(10, 13);
    expectClose(run(b), fullLogits(model, b), 1e-4, 1e-4, 'after setParameter');
    const down = model.getParameter('model.layers.1.mlp.down_proj.weight')!;
    down.write(new Float32Array(down.size).fill(0.01)); // in place
    const c = tokens(10, 17);
    expectClose(run(c), fullLogits(model, c), 1e-4, 1e-4, 'after an in-place change');
    const d = tokens(30, 19); // 8 blocks, 4 partitions: more than the decode buffers hold
    expectClose(run(d), fullLogits(model, d), 1e-4, 1e-4, 'a context longer than maxModelLen');
    runner.close();
  });

  it('copy-on-write: forked sequences diverge in copied blocks; both match a full forward', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 6, initStd: 0.1 });
    const pool = new BlockPool(16, 4);
    const runner = new ModelRunner(model, { numBlocks: 16, blockSize: 4, partitionSize: 8 });
    const base = Array.from({ length: 10 }, (_, i) => (i * 11 + 3) % 256); // 2.5 blocks: the last is partly written
    const parent = pool.allocatePrefix(0, base).table;
    pool.prepareWrite(parent, 0, 10);
    runner.step([{ tokens: base, start: 0, end: 10, table: parent }]);
    pool.markComputed(parent, base, 10);
    const child = pool.fork(parent, 1);
    const a = [...base, 17];
    const b = [...base, 99];
    // Both write position 10 into the shared third block: the child gets a copy first.
    const copies = pool.prepareWrite(child, 10, 11);
    expect(copies.length).toBe(1);
    runner.copyBlocks(copies);
    expect(pool.prepareWrite(parent, 10, 11)).toEqual([]);
    const [la, lb] = runner.step([
      { tokens: a, start: 10, end: 11, table: parent },
      { tokens: b, start: 10, end: 11, table: child },
    ]);
    expectClose(la!, fullLogits(model, a), 1e-4, 1e-4, 'parent branch');
    expectClose(lb!, fullLogits(model, b), 1e-4, 1e-4, 'child branch (copied block)');
    runner.close();
  });

  it('a feed-forward of another kind (not the SwiGLU MLP) runs as its module in decode steps, with the same logits', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 9, initStd: 0.1, feedForward: (_i, c, init) => new CountingSwiGLU(c.dim, c.ffnDim, init) });
    const pool = new BlockPool(16, 4);
    const runner = new ModelRunner(model, { numBlocks: 16, blockSize: 4, partitionSize: 8 });
    const tokens = Array.from({ length: 9 }, (_, i) => (i * 17 + 4) % 256);
    const { table } = pool.allocatePrefix(0, tokens);
    for (let step = 0; step < 4; step++) {
      const start = step === 0 ? 0 : tokens.length - 1;
      pool.prepareWrite(table, start, tokens.length);
      CountingSwiGLU.calls = 0;
      const [l] = runner.step([{ tokens, start, end: tokens.length, table }]);
      expect(CountingSwiGLU.calls).toBe(cfg.nLayers);
      expectClose(l!, fullLogits(model, tokens), 1e-4, 1e-4, `logits after ${tokens.length} tokens`);
      tokens.push(argmax(l!));
    }
    runner.close();
  });

  it('dynamic-base RoPE is set per sequence: a sequence gives the same logits alone and batched', () => {
    const dyn = validateConfig({ ...cfg, maxSeqLen: 16, ropeScaling: { type: 'dynamic-base', factor: 4 } });
    const model = new LlamaForCausalLM(dyn, { seed: 8, initStd: 0.1 });
    const run = (prompts: number[][]): Float32Array[] => {
      const pool = new BlockPool(32, 4);
      const runner = new ModelRunner(model, { numBlocks: 32, blockSize: 4 });
      const tables = prompts.map((p, i) => {
        const t = pool.allocatePrefix(i, p).table;
        pool.prepareWrite(t, 0, p.length);
        return t;
      });
      const out = runner.step(prompts.map((p, i) => ({ tokens: p, start: 0, end: p.length, table: tables[i]! })));
      runner.close();
      return out.map((l) => Float32Array.from(l!));
    };
    const long = Array.from({ length: 40 }, (_, i) => (i * 5 + 1) % 256); // beyond maxSeqLen: scaled base
    const short = Array.from({ length: 9 }, (_, i) => (i * 3 + 2) % 256); // within: plain base
    const [alone] = run([short]);
    const [batched] = run([short, long]);
    expectClose(batched!, alone!, 1e-5, 1e-5, 'short sequence beside a long one');
    expectClose(alone!, fullLogits(model, short), 1e-4, 1e-4, 'short sequence vs full forward');
  });

  it('a step of one-row items returns each item its own logits when fresh prompts are computed first', () => {
    // More than GEMV_MAX_ROWS rows: the general path, which puts fresh prompts (start 0) first.
    const model = new LlamaForCausalLM(cfg, { seed: 12, initStd: 0.1 });
    const pool = new BlockPool(256, 4);
    const runner = new ModelRunner(model, { numBlocks: 256, blockSize: 4 });
    const cached = Array.from({ length: 70 }, (_, i) => [(i * 7 + 3) % 256, (i * 11 + 5) % 256]);
    const tables = cached.map((p, i) => {
      const t = pool.allocatePrefix(i, p).table;
      pool.prepareWrite(t, 0, 2);
      return t;
    });
    runner.step(cached.map((p, i) => ({ tokens: p, start: 0, end: 1, table: tables[i]! }))); // first tokens cached
    // Items alternate: a sequence's second token (reads the cache), a fresh one-token prompt.
    const fresh = cached.map((_, i) => [(i * 13 + 1) % 256]);
    const freshTables = fresh.map((p, i) => {
      const t = pool.allocatePrefix(1000 + i, p).table;
      pool.prepareWrite(t, 0, 1);
      return t;
    });
    const items = cached.flatMap((p, i) => [
      { tokens: p, start: 1, end: 2, table: tables[i]! },
      { tokens: fresh[i]!, start: 0, end: 1, table: freshTables[i]! },
    ]);
    const out = runner.step(items);
    for (const i of [0, 1, 2, 3, 68, 69]) {
      expectClose(out[2 * i]!, fullLogits(model, cached[i]!), 1e-4, 1e-4, `cached sequence ${i}`);
      expectClose(out[2 * i + 1]!, fullLogits(model, fresh[i]!), 1e-4, 1e-4, `fresh prompt ${i}`);
    }
    runner.close();
  });
});
