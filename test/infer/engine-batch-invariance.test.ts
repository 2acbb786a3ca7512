// The engine's schedule never makes a sequence's chunks depend on its batch-mates: a prompt that
// fits the step budget is computed in one piece (it waits for the next step rather than being cut
// where this step's budget runs out), and only a prompt longer than the whole budget is chunked,
// at multiples of the budget from its own start. The old policy cut a prompt at the step's
// leftover, so the same prompt got other bits (its first chunk through the fresh-prompt attention,
// the rest through the paged cache) depending on the prompts ahead of it.
//
// What still depends on the batch is the kernel path of a step's size: matmuls of at most
// GEMV_MAX_ROWS (64) rows take the GEMV kernels (a decode step: the fused path), larger ones the
// GEMM kernels, and the two round differently. So the schedule tests keep every step of the watched
// sequence's life above 64 rows and logits rows (many mates still decoding) in both batches, and
// compare the watched sequence's every logit bit for bit between the two. With batchInvariant the
// engine pads every step past that limit: then a prompt alone (steps of one row) and in a crowd
// give the same bits too, which they do not without it.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/infer/index.js';
import { LlamaForCausalLM, type ModelConfig } from '../../src/models/index.js';
import { GEMV_MAX_ROWS } from '../../src/tensor/index.js';

const TINY: Partial<ModelConfig> = { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 160, maxSeqLen: 2048 };
const model = new LlamaForCausalLM(TINY as ModelConfig, { seed: 11 });
const BUDGET = 512;

function prompt(len: number, salt: number): number[] {
  return Array.from({ length: len }, (_, i) => (i * 31 + salt * 97 + 5) % 256);
}

interface Run {
  tokens: number[];
  logits: Float32Array[];
  logprobs: number[];
  /** Per watched token: the rows and the logits rows (sampled tokens) of the step that made its logits. */
  steps: { rows: number; logitRows: number }[];
}

/**
 * Greedy generation of every prompt on one engine, all submitted at once: the watched prompt
 * (index `watch`, `watchTokens` new tokens) with each token's logits and log-prob; the others
 * generate `mateTokens` tokens, so they keep decoding through the watched one's life.
 */
async function generate(prompts: number[][], watch: number, watchTokens: number, mateTokens: number, batchInvariant = false): Promise<Run> {
  const engine = new Engine(model, { kvCacheBytes: 1 << 24, maxNumSeqs: 256, maxNumBatchedTokens: BUDGET, enablePrefixCaching: false, eosTokenId: null, batchInvariant });
  const run: Run = { tokens: [], logits: [], logprobs: [], steps: [] };
  const stepRows: { rows: number; logitRows: number }[] = [];
  const at: number[] = []; // the step of each watched token
  let sampled = 0, computed = 0;
  engine.onStep = (s) => {
    stepRows.push({ rows: s.tokensComputed - computed, logitRows: sampled });
    computed = s.tokensComputed;
    sampled = 0;
  };
  try {
    await Promise.all(prompts.map(async (p, i) => {
      const mine = i === watch;
      const deltas = engine.generate(p, {
        maxTokens: mine ? watchTokens : mateTokens, temperature: 0, logprobs: 0,
        onToken: (t) => {
          sampled++;
          if (!mine) return;
          run.logits.push(Float32Array.from(t.logits));
          at.push(stepRows.length);
        },
      });
      for await (const d of deltas) {
        if (!mine) continue;
        run.tokens.push(...d.tokens);
        run.logprobs.push(...(d.logprobs ?? []).map((l) => l.logprob));
      }
    }));
  } finally {
    engine.close();
  }
  run.steps = at.map((k) => stepRows[k]!);
  return run;
}

function expectBitIdentical(got: Run, want: Run, what: string, checkPath = true): void {
  if (checkPath)
    for (const r of [got, want])
      for (const s of r.steps) expect(Math.min(s.rows, s.logitRows), `${what}: a step of the watched sequence ran on the GEMV path`).toBeGreaterThan(GEMV_MAX_ROWS);
  expect(got.tokens, what).toEqual(want.tokens);
  expect(got.logprobs, what).toEqual(want.logprobs);
  expect(got.logits.length, what).toBe(want.logits.length);
  got.logits.forEach((l, t) => {
    const bad = l.findIndex((v, j) => !Object.is(v, want.logits[t]![j]));
    expect(bad, `${what}: token ${t}: logit ${bad}: ${l[bad]} vs ${want.logits[t]![bad]}`).toBe(-1);
  });
}

describe('Engine schedule: a prompt is cut only at multiples of the budget from its own start', () => {
  it('a prompt that fits the budget gives the same bits first in a step and behind prompts that fill the step', async () => {
    const mates = Array.from({ length: 100 }, (_, i) => prompt(6, i + 1));
    const target = prompt(40, 0);
    // first: computed in one piece in the first step
    const first = await generate([target, ...mates], 0, 8, 30);
    // behind 80 prompts of 6 tokens (480 of the 512-token budget): the old policy cut it at 32 tokens
    const behind = await generate([...mates.slice(0, 80), target, ...mates.slice(80)], 80, 8, 30);
    expectBitIdentical(behind, first, 'behind 80 prompts');
  });

  it('a prompt longer than the budget takes the same chunks (512, 512, 176) whatever shares its steps', async () => {
    const long = prompt(1200, 4);
    const mates = Array.from({ length: 120 }, (_, i) => prompt(4, i + 1));
    // behind 120 short prompts (480 tokens: the old policy's first chunk was 32) vs behind 80 (320: 192)
    const a = await generate([...mates, long], 120, 4, 60);
    const b = await generate([...mates.slice(0, 80), long, ...mates.slice(80)], 80, 4, 60);
    expectBitIdentical(b, a, 'long prompt behind 80 vs 120 prompts');
  });
});

describe('Engine batchInvariant: a sequence\'s bits whatever shares its steps', () => {
  const crowd = Array.from({ length: 40 }, (_, i) => prompt(5 + ((i * 7) % 30), i + 1));
  const target = prompt(37, 0);
  const cases = async (batchInvariant: boolean): Promise<[Run, Run, Run]> => [
    await generate([target], 0, 12, 12, batchInvariant), // alone: steps of 37 rows, then 1
    await generate([...crowd.slice(0, 3), target], 3, 12, 20, batchInvariant), // a few mates: steps under 64 rows, then over
    await generate([...crowd, target], 40, 12, 6, batchInvariant), // a crowd that overflows the budget, then finishes first
  ];

  it('the same prompt alone, with a few mates and in a crowd gives the same logits bit for bit', async () => {
    const [alone, few, crowded] = await cases(true);
    expectBitIdentical(few, alone, 'with 3 mates', false);
    expectBitIdentical(crowded, alone, 'among 40', false);
  });

  it('without it, the step sizes show in the bits (the GEMV and GEMM kernels round differently)', async () => {
    const [alone, few, crowded] = await cases(false);
    const same = (a: Run, b: Run): boolean => a.logits.every((l, t) => l.every((v, j) => Object.is(v, b.logits[t]![j])));
    expect(same(few, alone) && same(crowded, alone)).toBe(false);
  });
});
