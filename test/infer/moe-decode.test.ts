// The fused MoE decode step (LlamaForCausalLM's fused plan with decodeLayer's sparse MoE
// feed-forward) against the per-op paged path on the same weights: logits of steps of 1..8 rows
// mixing decode rows and chunks over the cache, greedy generation through the engine, a decode
// row with every unchosen expert NaN-poisoned, and an expert weight updated in place between
// steps (as an optimizer does during PPO rollouts). The per-op twin is the same model with its
// MoE layers' fused weights withheld (moeDecodeWeights() null), so every step runs the modules.
import { describe, expect, it } from 'vitest';
import { BlockPool } from '../../src/infer/blocks.js';
import { Engine } from '../../src/infer/index.js';
import { ModelRunner, type StepItem } from '../../src/infer/runner.js';
import { LlamaForCausalLM, preset, validateConfig, type ModelConfig } from '../../src/models/index.js';
import { Module, SparseMoE, type LinearAdapter } from '../../src/nn/index.js';
import type { Tensor } from '../../src/tensor/index.js';
import { expectClose, greedyByFullForwards } from '../helpers.js';

const moes = (m: LlamaForCausalLM): SparseMoE[] => m.model.layers.items.map((l) => l.feedForward as SparseMoE);

/** The model twice with the same weights: fused (as built) and per-op (fused weights withheld). */
function twins(cfg: ModelConfig, seed: number): { fused: LlamaForCausalLM; perOp: LlamaForCausalLM } {
  const fused = new LlamaForCausalLM(cfg, { seed, initStd: 0.1 });
  const perOp = new LlamaForCausalLM(cfg, { seed, initStd: 0.1 });
  for (const m of moes(perOp)) m.moeDecodeWeights = () => null;
  return { fused, perOp };
}

/** A runner and its block pool over one model. */
function serving(model: LlamaForCausalLM) {
  const pool = new BlockPool(96, 4);
  const runner = new ModelRunner(model, { numBlocks: 96, blockSize: 4, partitionSize: 8 });
  return { pool, runner, tables: new Map<number, ReturnType<BlockPool['allocatePrefix']>['table']>() };
}

type Serving = ReturnType<typeof serving>;

/** One step of [start, end) for each (sequence id, tokens, start, end) on one model. */
function step(s: Serving, items: { id: number; tokens: number[]; start: number; end: number }[]): Float32Array[] {
  const its: StepItem[] = items.map((it) => {
    let table = s.tables.get(it.id);
    if (!table) {
      table = s.pool.allocatePrefix(it.id, it.tokens.slice(0, it.end)).table;
      s.tables.set(it.id, table);
    }
    s.pool.prepareWrite(table, it.start, it.end);
    return { tokens: it.tokens, start: it.start, end: it.end, table };
  });
  const out = s.runner.step(its);
  its.forEach((it) => s.pool.markComputed(it.table, it.tokens as number[], it.end));
  return out.map((l) => (l ? l.slice() : new Float32Array(0))); // copies: the runner reuses its buffer; null mid-prompt
}

/** An adapter that adds nothing but makes its Linear unfusable (as an unmerged LoRA). */
class PassThrough extends Module implements LinearAdapter {
  readonly merged = false;
  apply(_x: Tensor, y: Tensor): Tensor {
    return y;
  }
}

const argmax = (x: Float32Array): number => x.reduce((b, v, i) => (v > x[b]! ? i : b), 0);

/** Whether the fused path ran the latest step: the modules' forward (which records lastRouting) was not called. */
function forgetRouting(m: LlamaForCausalLM): void {
  for (const x of moes(m)) x.lastRouting = null;
}
const ranModules = (m: LlamaForCausalLM): boolean => moes(m).some((x) => x.lastRouting !== null);

for (const name of ['tiny-moe', 'tiny-moe-shared'] as const) {
  const cfg = validateConfig({ ...preset(name).config, maxSeqLen: 512 });

  describe(`fused MoE decode (${name})`, () => {
    it('gives the per-op logits for steps of 1..8 rows mixing decode rows and chunks over the cache', () => {
      const { fused, perOp } = twins(cfg, 3);
      const a = serving(fused), b = serving(perOp);
      const seqs = Array.from({ length: 8 }, (_, i) => ({ id: i, tokens: Array.from({ length: 3 + 2 * i }, (_, j) => (j * 37 + i * 11 + 1) % 256), done: 0 }));
      // Prefill (fresh prompts: the per-op path on both), two sequences per step.
      for (let i = 0; i < 8; i += 2) {
        const items = seqs.slice(i, i + 2).map((s) => ({ id: s.id, tokens: s.tokens, start: 0, end: s.tokens.length }));
        const la = step(a, items), lb = step(b, items);
        la.forEach((l, j) => expectClose(l, lb[j]!, 1e-4, 1e-4, `prefill ${i + j}`));
        for (const s of seqs.slice(i, i + 2)) {
          s.done = s.tokens.length;
          s.tokens.push(argmax(lb[0]!) % 256);
        }
      }
      let fusedSteps = 0;
      for (let t = 0; t < 16; t++) {
        // rows in 1..8: the first r sequences, sequence 0 adding a chunk of up to 3 tokens over its cache
        const r = 1 + (t % 8);
        const chosen = seqs.slice(0, r);
        const extra = t % 3 === 0 && r <= 6 ? 2 : 0;
        for (let j = 0; j < extra; j++) chosen[0]!.tokens.push((t * 19 + j) % 256);
        const items = chosen.map((s) => ({ id: s.id, tokens: s.tokens, start: s.done, end: s.tokens.length }));
        const rows = items.reduce((n, it) => n + it.end - it.start, 0);
        expect(rows).toBeLessThanOrEqual(8);
        forgetRouting(fused);
        const la = step(a, items), lb = step(b, items);
        if (!ranModules(fused)) fusedSteps++;
        expect(ranModules(perOp)).toBe(true);
        la.forEach((l, j) => expectClose(l, lb[j]!, 1e-4, 1e-4, `step ${t}, sequence ${j} (${rows} rows)`));
        chosen.forEach((s, j) => {
          s.done = s.tokens.length;
          s.tokens.push(argmax(lb[j]!));
        });
      }
      expect(fusedSteps).toBe(16); // every decode step took the fused path
      a.runner.close();
      b.runner.close();
    });

    it('generates the same greedy tokens through the engine, alone and batched', async () => {
      const { fused, perOp } = twins(cfg, 7);
      const prompts = Array.from({ length: 4 }, (_, i) => Array.from({ length: 5 + 4 * i }, (_, j) => (j * 29 + i * 53 + 2) % 256));
      const perToken = 2 * cfg.nLayers * cfg.nKvHeads * (cfg.dim / cfg.nHeads) * 4;
      const gen = async (m: LlamaForCausalLM): Promise<number[][]> => {
        const engine = new Engine(m, { kvCacheBytes: 64 * 16 * perToken, blockSize: 8 });
        const out = await Promise.all(prompts.map((p) => engine.complete(p, { maxTokens: 12, ignoreEos: true }).then((r) => r.tokens)));
        engine.close();
        return out;
      };
      const [ga, gb] = [await gen(fused), await gen(perOp)];
      expect(ga).toEqual(gb);
      expect(ga[2]).toEqual(greedyByFullForwards(perOp, prompts[2]!, 12));
    }, 60_000);

    it('a decode row sees expert weights updated in place, and reads only its chosen experts (the others NaN)', () => {
      const { fused, perOp } = twins(cfg, 11);
      const a = serving(fused), b = serving(perOp);
      const tokens = Array.from({ length: 9 }, (_, i) => (i * 23 + 5) % 256);
      const prefill = [{ id: 0, tokens, start: 0, end: 8 }];
      step(a, prefill);
      step(b, prefill);
      const decode = [{ id: 0, tokens, start: 8, end: 9 }];
      const before = step(b, decode)[0]!;
      // An optimizer-style in-place update of an expert of layer 0 (the same tensors, new values)
      // in both models: the next fused step sees it.
      for (const m of [fused, perOp]) {
        for (const ex of moes(m)[0]!.experts.items) {
          const w = ex.w2.weight;
          w.write(Float32Array.from(w.toArray() as Float32Array, (v) => 40 * v));
        }
      }
      const ref = step(b, decode)[0]!; // the same row again: the same keys and values into its slot
      forgetRouting(fused);
      const got = step(a, decode)[0]!;
      expect(ranModules(fused)).toBe(false);
      expect(ref.some((v, i) => Math.abs(v - before[i]!) > 1e-2)).toBe(true); // the update changes the logits
      expectClose(got, ref, 1e-4, 1e-4, 'after the in-place update');
      // Poison every expert the row did not choose, in place, in the fused model's layers.
      const chosen = moes(perOp).map((m) => new Set(m.lastRouting!.experts));
      let poisoned = 0;
      moes(fused).forEach((m, l) => m.experts.items.forEach((ex, e) => {
        if (chosen[l]!.has(e)) return;
        for (const lin of [ex.w1, ex.w2, ex.w3]) lin.weight.write(new Float32Array(lin.weight.size).fill(NaN));
        poisoned++;
      }));
      expect(poisoned).toBe(cfg.nLayers * (cfg.numExperts - cfg.topK));
      forgetRouting(fused);
      const got2 = step(a, decode)[0]!;
      expect(ranModules(fused)).toBe(false);
      expect(got2.every(Number.isFinite)).toBe(true);
      expectClose(got2, ref, 1e-4, 1e-4, 'poisoned unchosen experts');
      a.runner.close();
      b.runner.close();
    });
  });
}

describe('the fused MoE decode path declines', () => {
  const cfg = validateConfig({ ...preset('tiny-moe').config, maxSeqLen: 512 });
  it('a layer whose expert (or router) carries an unmerged adapter, or whose jitter is forced on, and still gives the per-op logits', () => {
    const { fused, perOp } = twins(cfg, 5);
    const moe0 = moes(fused)[0]!;
    expect(fused.model.layers.items[0]!.decodeWeights()).not.toBeNull();
    moe0.experts.items[2]!.w3.setAdapter(new PassThrough());
    expect(moe0.moeDecodeWeights()).toBeNull();
    expect(fused.model.layers.items[0]!.decodeWeights()).toBeNull();
    moe0.experts.items[2]!.w3.setAdapter(null);
    moe0.gate.setAdapter(new PassThrough());
    expect(moe0.moeDecodeWeights()).toBeNull();
    moe0.gate.setAdapter(null);
    expect(moe0.moeDecodeWeights()).not.toBeNull();
    const jittery = new SparseMoE({ dim: cfg.dim, hiddenDim: cfg.ffnDim, numExperts: 4, topK: 2, jitter: 0.1 });
    expect(jittery.moeDecodeWeights()).not.toBeNull(); // jitter applies only while training
    jittery.training = true;
    expect(jittery.moeDecodeWeights()).toBeNull();
    jittery.dispose();
    // With an adapter on an expert of layer 1, decode steps run the modules, with the same logits.
    moes(fused)[1]!.experts.items[0]!.w1.setAdapter(new PassThrough());
    const a = serving(fused), b = serving(perOp);
    const tokens = Array.from({ length: 7 }, (_, i) => (i * 41 + 9) % 256);
    step(a, [{ id: 0, tokens, start: 0, end: 6 }]);
    step(b, [{ id: 0, tokens, start: 0, end: 6 }]);
    forgetRouting(fused);
    const got = step(a, [{ id: 0, tokens, start: 6, end: 7 }])[0]!;
    expect(ranModules(fused)).toBe(true);
    expectClose(got, step(b, [{ id: 0, tokens, start: 6, end: 7 }])[0]!, 1e-4, 1e-4, 'adapted expert');
    a.runner.close();
    b.runner.close();
  });
});
