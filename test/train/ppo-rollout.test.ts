// PPO's rollout bookkeeping alone (src/train/ppo/rollout.ts), and a run whose reward is a frozen
// reward model folder (src/models/reward.ts): the reward model scores (prompt ++ response) at its
// last token, the response's true EOS.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/models/index.js';
import { ScoreHeadModel, saveRewardModel } from '../../src/models/reward.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { validateStageConfig, type PpoConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import {
  microBatchRows, microBatchesPerRollout, packRollout, responseSeed, rolloutCacheFit, rolloutFromJson, rolloutPrompts, rolloutToJson, type Rollout,
} from '../../src/train/ppo/rollout.js';
import { ppo } from '../../src/train/stages/ppo.js';
import { TINY, writeInit } from './sft-fixtures.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ppo-rollout-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('PPO rollout bookkeeping', () => {
  it('each pass over the prompts takes every prompt once, in an order that depends on the seed', () => {
    const a = [...rolloutPrompts(0, 4, 8, 1), ...rolloutPrompts(1, 4, 8, 1)];
    expect([...a].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(rolloutPrompts(2, 4, 8, 1)).not.toEqual(rolloutPrompts(0, 4, 8, 1)); // the second pass is reshuffled
    expect(rolloutPrompts(0, 4, 8, 2)).not.toEqual(rolloutPrompts(0, 4, 8, 1));
    expect(rolloutPrompts(3, 3, 5, 1)).toHaveLength(3); // a rollout may straddle two passes
  });

  it('every epoch of a rollout walks all its rows once, in a new order', () => {
    const o = { rows: 8, batchSize: 2, epochs: 3, seed: 5 };
    expect(microBatchesPerRollout(8, 2, 3)).toBe(12);
    const epochs = [0, 1, 2].map((e) => [0, 1, 2, 3].flatMap((k) => microBatchRows(7, e * 4 + k, o)));
    for (const e of epochs) expect([...e].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(epochs[1]).not.toEqual(epochs[0]);
    expect(() => microBatchRows(7, 12, o)).toThrow(/past the 3 epochs/);
    expect(new Set([0, 1, 2, 3].map((i) => responseSeed(1, 0, i))).size).toBe(4);
    expect(responseSeed(1, 1, 0)).not.toBe(responseSeed(1, 0, 1));
  });

  it('packs (prompt ++ response) rows: the logit row of response token t is prompt length - 1 + t', () => {
    const p = packRollout([{ prompt: [1, 2, 3], response: [7, 8] }, { prompt: [4], response: [9] }]);
    expect(Array.from(p.tokens)).toEqual([1, 2, 3, 7, 8, 4, 9]);
    expect(Array.from(p.cuSeqlens)).toEqual([0, 5, 7]);
    expect(Array.from(p.rows)).toEqual([2, 3, 5]);
    expect(Array.from(p.ids)).toEqual([7, 8, 9]);
  });

  it('says whether the engine cache holds a whole rollout at once (else responses wait or are recomputed)', () => {
    // llama-5m's shape: 6 layers, 4 KV heads of 32: 6144 bytes a token; 32 prompts of up to 162 tokens + 64 new
    const cfg = { nLayers: 6, nKvHeads: 4, nHeads: 8, dim: 256 } as ModelConfig;
    const lengths = [60, 162, 100];
    const small = rolloutCacheFit(cfg, lengths, 32, 64, 16);
    expect(small).toEqual({ short: true, holds: 170 * 16, needs: 32 * 240, suggestMiB: 45 }); // 226 tokens: 15 blocks of 16
    expect(rolloutCacheFit(cfg, lengths, 32, 64, 64).short).toBe(false);
    expect(rolloutCacheFit(cfg, lengths, 32, 64, small.suggestMiB).short).toBe(false);
  });

  it('the rollout buffer goes through the checkpoint JSON unchanged (float32 values exact)', () => {
    const f = (xs: number[]): Float32Array => Float32Array.from(xs);
    const r: Rollout = {
      index: 3,
      stats: { reward: 0.1, rewardStd: 0.2, kl: 0.3, klCoef: 0.05, rlhfReward: 0.085, responseLength: 2, eosRate: 1, rolloutTokensPerSec: 10 },
      rows: [{ prompt: Int32Array.of(1, 2), response: Int32Array.of(3, 257), oldLogprobs: f([-1.1, -0.3]), oldValues: f([0.1, 1 / 3]), advantages: f([Math.PI, -Math.E]), returns: f([1e-7, 2]) }],
    };
    const back = rolloutFromJson(JSON.parse(JSON.stringify(rolloutToJson(r))));
    expect(back).toEqual(r);
  });
});

describe('PPO against a frozen reward model', () => {
  it('runs with reward.model (a LlamaForSequenceClassification folder) and reports its scores', async () => {
    const init = path.join(root, 'init');
    await writeInit(init, 4);
    const rm = new ScoreHeadModel(TINY as ModelConfig, { seed: 9, scoreInitStd: 1 });
    await saveRewardModel(rm, path.join(root, 'rm'), { tokenizer: new ByteTokenizer() });
    rm.dispose();
    fs.writeFileSync(path.join(root, 'p.jsonl'), Array.from({ length: 8 }, (_, i) => JSON.stringify({ instruction: `Claim ${i}`, input: 'a hinge' })).join('\n'));
    const cfg = validateStageConfig({
      kind: 'ppo', name: 'rm', runDir: path.join(root, 'run'), model: init, tokenizer: 'byte', prompts: { path: path.join(root, 'p.jsonl') },
      reward: { model: path.join(root, 'rm') }, seqLen: 64, batchSize: 4, steps: 4, optimizer: { lr: 1e-3 }, schedule: { kind: 'constant' },
      evalEvery: 0, checkpointEvery: 0, threads: 1, ppo: { rolloutBatch: 8, epochs: 2, maxNewTokens: 8 },
    }) as PpoConfig;
    const r = await ppo(cfg, { progress: null });
    expect(r).toMatchObject({ status: 'completed', step: 4, prompts: { used: 8, skipped: 0 } });
    const ms = readMetrics(path.join(root, 'run', 'metrics.jsonl')).filter((m) => typeof m.loss === 'number');
    expect(ms[0]!.rewardStd as number).toBeGreaterThan(0); // the model tells the responses apart
    expect(ms.every((m) => Number.isFinite(m.reward as number))).toBe(true);
  }, 60_000);
});
