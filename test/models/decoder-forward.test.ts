// The one decoder forward: the same LlamaModel.forward under packed metadata (training) and paged
// metadata (serving: fresh prompts over their own keys, later chunks and decode rows through the
// block tables), and the fused decode path behind forwardPaged, chosen by the model and prepared
// once per set of weights.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  LlamaForCausalLM, SwiGLUMLP, Tensor, noGrad, preset, validateConfig, type PagedAttentionMetadata,
} from '../../src/index.js';
import { ropeParams } from '../../src/models/config.js';
import type { DecodeWorkspace, PagedStep } from '../../src/models/llama.js';
import { CountingSwiGLU, expectClose } from '../helpers.js';

const cfg = validateConfig({ ...preset('tiny').config, nHeads: 4, nKvHeads: 2, maxSeqLen: 128 });
const i32 = (v: number[]): Tensor => Tensor.from(Int32Array.from(v), [v.length], { dtype: 'i32' });

function fullLogits(model: LlamaForCausalLM, tokens: number[]): Float32Array {
  return noGrad(() => {
    const out = model.forward({ tokens: Int32Array.from(tokens) });
    const all = out.toArray() as Float32Array;
    out.dispose();
    return all;
  });
}

/** One sequence served through forwardPaged over a cache of 8 blocks of 4 (block table 0..7). */
class Served {
  readonly k: Tensor[] = [];
  readonly v: Tensor[] = [];
  readonly V = cfg.vocabSize;
  constructor(readonly model: LlamaForCausalLM) {
    for (let l = 0; l < cfg.nLayers; l++) {
      this.k.push(Tensor.zeros([8, 4, cfg.nKvHeads, cfg.dim / cfg.nHeads]));
      this.v.push(Tensor.zeros([8, 4, cfg.nKvHeads, cfg.dim / cfg.nHeads]));
    }
  }
  /** Rows [start, end) of tokens; fresh (start 0) attends over its own keys. Returns the logits of every row. */
  step(tokens: number[], start: number, end: number, workspace?: DecodeWorkspace, reuse?: PagedStep): { logits: Float32Array; step: PagedStep } {
    const N = end - start;
    const rows = Array.from({ length: N }, (_, i) => start + i);
    const attention: PagedAttentionMetadata = {
      kind: 'paged', rows: N, positions: i32(rows), slotMapping: i32(rows), rope: ropeParams(cfg), cache: { k: this.k, v: this.v },
      fresh: start === 0 ? { rows: N, cuSeqlens: i32([0, N]) } : null,
      cached: start === 0 ? null : {
        seqs: 1, blockTables: i32([0, 1, 2, 3, 4, 5, 6, 7]), maxBlocks: 8, cuQ: i32([0, N]), contextLens: i32([end]), maxContextLen: end, partitionSize: 8,
      },
    };
    const step: PagedStep = reuse ?? {
      tokens: i32(tokens.slice(start, end)), attention, logitRows: i32(Array.from({ length: N }, (_, i) => i)), logitRowCount: N,
      logits: Tensor.zeros([Math.max(N, 64), this.V]), workspace,
    };
    this.model.forwardPaged(step);
    return { logits: (step.logits.toArray() as Float32Array).slice(0, N * this.V), step };
  }
}

describe('one decoder forward', () => {
  it('packed and paged metadata give the same logits (fresh prompt, a later chunk, a decode row)', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 4, initStd: 0.1 });
    const tokens = Array.from({ length: 11 }, (_, i) => (i * 37 + 5) % 256);
    const full = fullLogits(model, tokens);
    const s = new Served(model);
    const V = cfg.vocabSize;
    expectClose(s.step(tokens, 0, 7).logits, full.subarray(0, 7 * V), 1e-4, 1e-4, 'fresh prompt rows');
    expectClose(s.step(tokens, 7, 10).logits, full.subarray(7 * V, 10 * V), 1e-4, 1e-4, 'chunk over the cache');
    expectClose(s.step(tokens, 10, 11).logits, full.subarray(10 * V), 1e-4, 1e-4, 'decode row over the cache');
  });

  it('the model runs a decode step through the fused path, prepared once per set of weights', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 5, initStd: 0.1 });
    const ws = model.createDecodeWorkspace({ maxContextLen: 32, partitionSize: 8 });
    const tokens = Array.from({ length: 12 }, (_, i) => (i * 11 + 2) % 256);
    const s = new Served(model);
    s.step(tokens, 0, 10);
    const first = s.step(tokens, 10, 11, ws);
    const plan = ws.plan;
    expect(plan !== null && plan !== 'unfusable').toBe(true);
    const full = fullLogits(model, tokens);
    const V = cfg.vocabSize;
    expectClose(first.logits, full.subarray(10 * V, 11 * V), 1e-4, 1e-4, 'fused decode row');
    // The next decode step over the same request object: the same prepared calls.
    const st = first.step;
    st.tokens.write(Int32Array.of(tokens[11]!), 0);
    st.attention.positions.write(Int32Array.of(11), 0);
    st.attention.slotMapping.write(Int32Array.of(11), 0);
    st.attention.cached!.contextLens.write(Int32Array.of(12), 0);
    st.attention.cached!.maxContextLen = 12;
    const second = s.step(tokens, 11, 12, ws, st);
    expect(ws.plan).toBe(plan);
    expectClose(second.logits, full.subarray(11 * V), 1e-4, 1e-4, 'second fused decode row');
    // Replacing a weight makes new calls; they see the new weight.
    model.setParameter('model.layers.1.mlp.up_proj.weight', Tensor.randn([cfg.ffnDim, cfg.dim], { seed: 77, std: 0.1 }));
    const third = s.step(tokens, 11, 12, ws, st);
    expect(ws.plan).not.toBe(plan);
    expectClose(third.logits, fullLogits(model, tokens).subarray(11 * V), 1e-4, 1e-4, 'after setParameter');
    ws.dispose();
  });

  it('a layer whose feed-forward is not a plain SwiGLU MLP makes the model take the separate ops, with the same logits', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 6, initStd: 0.1, feedForward: (i, c, init) => (i === 1 ? new CountingSwiGLU(c.dim, c.ffnDim, init) : new SwiGLUMLP(c.dim, c.ffnDim, init)) });
    const ws = model.createDecodeWorkspace({ maxContextLen: 32, partitionSize: 8 });
    const tokens = Array.from({ length: 9 }, (_, i) => (i * 13 + 1) % 256);
    const s = new Served(model);
    s.step(tokens, 0, 8);
    CountingSwiGLU.calls = 0;
    const { logits } = s.step(tokens, 8, 9, ws);
    expect(ws.plan).toBe('unfusable');
    expect(CountingSwiGLU.calls).toBe(1);
    expectClose(logits, fullLogits(model, tokens).subarray(8 * cfg.vocabSize), 1e-4, 1e-4, 'decode row, separate ops');
    ws.dispose();
  });

  it('the runner reaches into no module and no storage: it builds metadata and calls the model', () => {
    const src = readFileSync(new URL('../../src/infer/runner.ts', import.meta.url), 'utf8');
    expect(src).not.toMatch(/instanceof|\.storage\b|\.weight\b|\.layers\b|embed_tokens|\.mlp\b|self_attn/);
  });
});
