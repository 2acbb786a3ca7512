// patentgpt plan: its figures come from the config (parameterCount, the trainer's memory
// estimate, FLOPs per token) and agree with a case computed by hand.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { planStage } from '../../src/cli/plan.js';
import { estimateTrainingMemory } from '../../src/train/memory.js';
import { parameterCount, preset } from '../../src/models/index.js';

const tiny = { vocabSize: 1000, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, maxSeqLen: 128 };

describe('patentgpt plan', () => {
  it('gives the hand-computed figures of a small dense model', async () => {
    const p = await planStage({ name: 'hand', model: tiny, seqLen: 128, batchSize: 4, gradAccum: 2, steps: 10 }, { cpuFlops: 1e9, gpuFlops: 1e12 });
    // embedding 64,000 + lm_head 64,000 + attention 2 x (64x64 + 2x64x32 + 64x64) = 24,576
    // + SwiGLU 2 x 3x64x128 = 49,152 + norms 5 x 64 = 320
    expect(p.parameters).toEqual({ total: 202_048, active: 202_048 });
    // 10 steps x 4 rows x 2 micro-batches x 128 tokens
    expect(p.tokens).toBe(10_240);
    // 6 x (24,576 + 49,152 + 64,000) + 12 x (2 layers x 128 x 64)
    expect(p.trainingFlopsPerToken).toBe(1_022_976);
    expect(p.flops).toBe(10_240 * 1_022_976);
    expect(p.seconds.cpu).toBeCloseTo(10.475274, 5);
    expect(p.seconds.gpu).toBeCloseTo(0.010475274, 8);
    // K and V: 2 x 2 layers x 2 kv heads x 16 x 128 positions x 2 bytes (bf16)
    expect(p.kvCacheBytes).toBe(32_768);
    expect(p.servingWeightBytes).toBe(2 * 202_048);
    // f32 weights, gradients, two AdamW moments and their checkpoint copies
    expect(p.trainingMemory.weights).toBe(4 * 202_048);
    expect(p.trainingMemory.gradients).toBe(4 * 202_048);
    expect(p.trainingMemory.optimizer).toBe(8 * 202_048);
  });

  it('counts both sequences of a pair and the reference pass for DPO', async () => {
    const p = await planStage({ kind: 'dpo', model: tiny, seqLen: 128, batchSize: 4, steps: 10 }, { cpuFlops: 1e9 });
    expect(p.tokens).toBe(10 * 4 * 2 * 128);
    // training 1,022,976 + the reference's forward 2 x 137,728 + 4 x 16,384 per token
    expect(p.flops).toBe(p.tokens * (1_022_976 + 340_992));
  });

  it("matches parameterCount and the trainer's estimate on the paper's stage configs", async () => {
    const cfg = preset('llama2-13b-55k').config;
    const p = await planStage({ model: 'llama2-13b-55k', seqLen: 4096, batchSize: 4, gradAccum: 64, tokenBudget: 200e9 });
    expect(p.parameters.total).toBe(parameterCount(cfg).total);
    expect(p.trainingMemory).toEqual(estimateTrainingMemory(cfg, { batchSize: 4, seqLen: 4096 }));
    expect(p.steps).toBe(Math.ceil(200e9 / (4 * 64 * 4096)));
    const moe = await planStage({ model: 'mixtral-8x7b', seqLen: 4096, batchSize: 1, steps: 1 });
    expect(moe.parameters.active).toBe(parameterCount(preset('mixtral-8x7b').config).active);
    expect(moe.parameters.active).toBeLessThan(moe.parameters.total);
  });

  it('the CLI prints a row per config', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'plan', '--config', 'examples/paper-stage1.json', 'examples/paper-stage2.json', '--json'], { encoding: 'utf8' });
    const plans = JSON.parse(out) as { name: string; seqLen: number }[];
    expect(plans.map((x) => [x.name, x.seqLen])).toEqual([['patentgpt-stage1', 4096], ['patentgpt-stage2', 16384]]);
  });
});
