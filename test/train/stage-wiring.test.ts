// Loose ends between the fine-tuning stages and what they stand on: a reward folder's config.json
// (transformers' *ForSequenceClassification) reads as its decoder's config; loadWeights fills any
// { namedParameters, config } view; the stage log counts pairs for pair stages, and a pair loss
// records and logs no perplexity; the reward CLI's summary names the final folder of a LoRA run.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, fromHFConfig, loadWeights, readConfig, savePretrained, toHFConfig, validateConfig } from '../../src/models/index.js';
import { ScoreHeadModel, saveRewardModel } from '../../src/models/reward.js';
import { Tensor, add, matmul, scale, sum } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { validateStageConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { describeStage } from '../../src/train/stages/common.js';
import { Trainer, type TrainTask } from '../../src/train/trainer.js';
import { vectorTaskState } from './task-state.js';

const repo = new URL('../../', import.meta.url).pathname;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-stage-wiring-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const TINY = { vocabSize: 259, dim: 32, nLayers: 1, nHeads: 2, nKvHeads: 1, ffnDim: 64, maxSeqLen: 128 };

describe('reward folders as model configs', () => {
  it('fromHFConfig reads LlamaForSequenceClassification and MixtralForSequenceClassification configs as their decoders', () => {
    const dense = validateConfig(TINY);
    const hf = toHFConfig(dense) as unknown as Record<string, unknown>;
    expect(fromHFConfig({ ...hf, architectures: ['LlamaForSequenceClassification'], num_labels: 1 })).toEqual(fromHFConfig(hf));
    const moe = validateConfig({ ...TINY, numExperts: 4, topK: 2 });
    const hfMoe = toHFConfig(moe) as unknown as Record<string, unknown>;
    const m = fromHFConfig({ ...hfMoe, architectures: ['MixtralForSequenceClassification'] });
    expect(m).toEqual(fromHFConfig(hfMoe));
    expect(m.numExperts).toBe(4);
    expect(() => fromHFConfig({ ...hf, architectures: ['GPT2ForSequenceClassification'] })).toThrow(/architectures.*LlamaForSequenceClassification/);
  });

  it('readConfig of a saved reward folder gives the decoder config; loadWeights fills a { namedParameters, config } view', async () => {
    const dir = path.join(root, 'reward');
    const m = new ScoreHeadModel(validateConfig(TINY), { seed: 3 });
    await saveRewardModel(m, dir);
    expect((await readConfig(dir)).dim).toBe(TINY.dim);
    const params = m.namedParameters().map(([n, t]) => [n, Tensor.zeros(t.shape)] as [string, Tensor]);
    await loadWeights({ namedParameters: () => params, config: { ...m.config, tieEmbeddings: false } }, dir);
    const want = new Map(m.namedParameters());
    for (const [n, t] of params) expect(Array.from(t.toArray() as Float32Array)).toEqual(Array.from(want.get(n)!.toArray() as Float32Array));
    m.dispose();
  });
});

describe('pair stages in the log and the metrics', () => {
  it('the stage line counts pairs and their sequences for dpo/reward, tokens otherwise', () => {
    const cfg = validateStageConfig({ name: 'x', model: 'tiny', seqLen: 64, batchSize: 4, gradAccum: 2, steps: 10, optimizer: { lr: 1e-3 } });
    const setup = { modelConfig: validateConfig(TINY), worldSize: 1 };
    const peak = { peakFlops: 1e9, peakSource: 'config' as const, threads: 1 };
    expect(describeStage(cfg, setup, peak)).toContain('10 steps of 512 tokens;');
    expect(describeStage(cfg, setup, peak, true)).toContain('10 steps of 8 pairs (16 sequences of up to 64 tokens);');
  });

  it('a task whose loss is not a token NLL (lossIsTokenNll false) records and logs no perplexity', async () => {
    const w = Tensor.from([1, 2], [2], { requiresGrad: true });
    const pos = { value: 0 };
    const task: TrainTask<{ tokens: Int32Array }> = {
      parameters: () => [['w', w]],
      nextBatch: () => ({ tokens: new Int32Array(3 + pos.value++ * 0) }),
      loss: () => ({ loss: add(scale(sum(matmul(w.reshape([1, 2]), w.reshape([2, 1]))), 0.5), Tensor.from([1], [])) }),
      evalBatches: function* (n: number) {
        for (let i = 0; i < n; i++) yield { tokens: new Int32Array(3) };
      },
      lossIsTokenNll: false,
      ...vectorTaskState(w, pos),
    };
    const lines: string[] = [];
    const progress = { isTTY: false, write: (s: string): boolean => (lines.push(s), true) };
    const runDir = path.join(root, 'pairs-eval');
    await new Trainer(task, {
      runDir, totalSteps: 2, schedule: { kind: 'constant', lr: 0.01, warmupSteps: 0 }, configHash: 'x', evalEvery: 2, evalBatches: 1,
      progress: progress as unknown as NodeJS.WriteStream,
    }).run();
    const evals = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => r.valLoss !== undefined);
    expect(evals).toHaveLength(1);
    expect(evals[0]!.valPerplexity).toBeUndefined();
    const evalLog = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.message === 'eval at step 2');
    expect(evalLog).toMatchObject({ valLoss: evals[0]!.valLoss });
    expect(evalLog).not.toHaveProperty('ppl');
    w.dispose();
  });
});

describe('patentgpt reward (CLI) with LoRA', () => {
  const initDir = path.join(root, 'init');
  const pairs = path.join(root, 'pairs.jsonl');
  beforeAll(async () => {
    const m = new LlamaForCausalLM(validateConfig(TINY), { seed: 1 });
    await savePretrained(m, initDir, { tokenizer: new ByteTokenizer() });
    m.dispose();
    fs.writeFileSync(pairs, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `Q${i}?`, chosen: `Claim ${i} is independent.`, rejected: `No ${i}.` })).join('\n') + '\n');
  });

  it('the summary line names the final reward folder (no adapter apart: merged)', () => {
    const file = path.join(root, 'reward-lora.json');
    fs.writeFileSync(file, JSON.stringify({
      kind: 'reward', name: 'lora-cli', model: initDir, init: initDir, tokenizer: 'byte', data: { sources: [pairs] },
      seqLen: 64, batchSize: 2, steps: 2, optimizer: { lr: 0.001 }, checkpointEvery: 0, threads: 1, lora: { r: 2 },
    }));
    const runDir = path.join(root, 'lora-cli-run');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/main.ts'), 'reward', '--config', file, '--run-dir', runDir, '--quiet'], { encoding: 'utf8', cwd: repo });
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(summary).toMatchObject({ event: 'summary', status: 'completed', step: 2, final: path.resolve(runDir, 'final') });
    expect(summary).not.toHaveProperty('adapter');
    expect(fs.existsSync(path.join(runDir, 'final', 'config.json'))).toBe(true);
  }, 120_000);
});
