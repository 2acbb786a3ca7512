// An SMoE model serves through the same paged forward as a dense one: the separate ops give the
// logits of the packed forward for a fresh prompt and a chunk over the cache, and the fused
// decode path (its MoE feed-forward in the same native call per layer) for decode rows.
import { describe, expect, it } from 'vitest';
import { LlamaForCausalLM, Tensor, noGrad, preset, type PagedAttentionMetadata } from '../../src/index.js';
import { ropeParams } from '../../src/models/config.js';
import type { DecodeWorkspace, PagedStep } from '../../src/models/llama.js';
import { expectClose } from '../helpers.js';

const cfg = preset('tiny-moe').config;
const i32 = (v: number[]): Tensor => Tensor.from(Int32Array.from(v), [v.length], { dtype: 'i32' });

describe('SMoE serving', () => {
  it('paged steps (fresh prompt, chunk, decode rows with a workspace) equal the packed forward', () => {
    const model = new LlamaForCausalLM(cfg, { seed: 8, initStd: 0.1 });
    const D = cfg.dim / cfg.nHeads;
    const k = Array.from({ length: cfg.nLayers }, () => Tensor.zeros([8, 4, cfg.nKvHeads, D]));
    const v = Array.from({ length: cfg.nLayers }, () => Tensor.zeros([8, 4, cfg.nKvHeads, D]));
    const V = cfg.vocabSize;
    const step = (tokens: number[], start: number, end: number, workspace?: DecodeWorkspace): Float32Array => {
      const N = end - start;
      const rows = Array.from({ length: N }, (_, i) => start + i);
      const attention: PagedAttentionMetadata = {
        kind: 'paged', rows: N, positions: i32(rows), slotMapping: i32(rows), rope: ropeParams(cfg), cache: { k, v },
        fresh: start === 0 ? { rows: N, cuSeqlens: i32([0, N]) } : null,
        cached: start === 0 ? null : {
          seqs: 1, blockTables: i32([0, 1, 2, 3, 4, 5, 6, 7]), maxBlocks: 8, cuQ: i32([0, N]), contextLens: i32([end]), maxContextLen: end, partitionSize: 8,
        },
      };
      const s: PagedStep = {
        tokens: i32(tokens.slice(start, end)), attention, logitRows: i32(rows.map((_, i) => i)), logitRowCount: N,
        logits: Tensor.zeros([Math.max(N, 64), V]), workspace,
      };
      model.forwardPaged(s);
      return (s.logits.toArray() as Float32Array).slice(0, N * V);
    };
    const tokens = Array.from({ length: 13 }, (_, i) => (i * 29 + 3) % 256);
    const full = noGrad(() => model.forward({ tokens: Int32Array.from(tokens) }).toArray() as Float32Array);
    const ws = model.createDecodeWorkspace({ maxContextLen: 32, partitionSize: 8 });
    expectClose(step(tokens, 0, 8), full.subarray(0, 8 * V), 1e-4, 1e-4, 'fresh prompt rows');
    expectClose(step(tokens, 8, 11), full.subarray(8 * V, 11 * V), 1e-4, 1e-4, 'chunk over the cache');
    expectClose(step(tokens, 11, 12, ws), full.subarray(11 * V, 12 * V), 1e-4, 1e-4, 'decode row');
    expect(ws.plan).not.toBe('unfusable'); // the fused MoE decode took the row
    expect(ws.plan).not.toBeNull();
    expectClose(step(tokens, 12, 13, ws), full.subarray(12 * V), 1e-4, 1e-4, 'second decode row');
    ws.dispose();
    model.dispose();
  });
});
