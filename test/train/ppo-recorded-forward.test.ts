// The PPO stage runs one policy forward less per rollout: the rows of a rollout's first
// micro-batch are scored by a forward recorded for backward, and that micro-batch's loss
// differentiates the same graph (the weights have not moved in between) instead of running the
// forward again. Counted here on the real model: sequences through LlamaForCausalLM.hidden per
// rollout (policy and reference passes, scoring and training) are (epochs + 2) x rolloutBatch
// less one micro-batch. The first loss of each rollout then sees its own old log-probs: ratio
// exactly 1, approx-KL exactly 0. Under LoRA dropout the training forward draws masks that the
// scoring forward must not, so there the old path (a no-grad forward of every row) stays.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM } from '../../src/models/index.js';
import { Tensor } from '../../src/tensor/index.js';
import { validateStageConfig, type PpoConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { ppo } from '../../src/train/stages/ppo.js';
import { writeInit } from './sft-fixtures.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ppo-rec-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const initDir = path.join(root, 'init');
const promptFile = path.join(root, 'prompts.jsonl');

beforeAll(async () => {
  await writeInit(initDir, 7);
  const lines = Array.from({ length: 32 }, (_, i) => JSON.stringify({ prompt: `Write claim 1 for part ${i}.` }));
  fs.writeFileSync(promptFile, lines.join('\n') + '\n');
});

const B = 32, MB = 16, EPOCHS = 2, ROLLOUTS = 2;

function config(name: string, extra: Record<string, unknown> = {}): PpoConfig {
  return validateStageConfig({
    kind: 'ppo', name, runDir: path.join(root, name), model: initDir, tokenizer: 'byte', prompts: { path: promptFile }, reward: { function: 'claim-format' },
    seqLen: 80, batchSize: MB, steps: ROLLOUTS * EPOCHS * (B / MB), optimizer: { lr: 2e-3, weightDecay: 0 }, schedule: { kind: 'constant' },
    evalEvery: 0, checkpointEvery: 0, seed: 4, threads: 1, ...extra,
    ppo: { rolloutBatch: B, epochs: EPOCHS, maxNewTokens: 12, temperature: 1, klCoef: 0.01 },
  }) as PpoConfig;
}

/** Runs the stage and counts the sequences of every decoder forward (LlamaForCausalLM.hidden, the real one). */
async function countedRun(cfg: PpoConfig): Promise<number> {
  const proto = LlamaForCausalLM.prototype;
  const real = proto.hidden;
  let seqs = 0;
  proto.hidden = function (this: LlamaForCausalLM, ...args: Parameters<typeof real>) {
    const cu = args[0].cuSeqlens;
    seqs += cu === undefined ? 1 : (cu instanceof Tensor ? cu.size : cu.length) - 1;
    return real.apply(this, args);
  };
  try {
    const r = await ppo(cfg, { progress: null });
    expect(r.status).toBe('completed');
    expect(r.rollouts).toBe(ROLLOUTS);
  } finally {
    proto.hidden = real;
  }
  return seqs;
}

describe('PPO: the first micro-batch of a rollout reuses the forward recorded at scoring time', () => {
  it('one policy forward of a micro-batch less per rollout; that loss sees ratio 1 and approx-KL 0', async () => {
    const cfg = config('recorded');
    // per rollout: policy scoring (B) + reference (B) + epochs x B of training, less the first micro-batch's
    expect(await countedRun(cfg)).toBe(ROLLOUTS * ((EPOCHS + 2) * B - MB));
    const ms = readMetrics(path.join(cfg.runDir, 'metrics.jsonl')).filter((m) => typeof m.loss === 'number');
    const perRollout = EPOCHS * (B / MB);
    for (let r = 0; r < ROLLOUTS; r++) {
      const m = ms[r * perRollout]!;
      expect([m.ratio, m.approxKl, m.clipFraction], `first micro-batch of rollout ${r}`).toEqual([1, 0, 0]);
      expect(ms[r * perRollout + 1]!.approxKl as number, `second micro-batch of rollout ${r}: the weights moved`).toBeGreaterThan(0);
    }
  }, 120_000);

  it('not under LoRA dropout: every row takes the no-grad scoring forward, as the loss must not see its masks', async () => {
    const cfg = config('lora-dropout', { lora: { r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] } });
    expect(await countedRun(cfg)).toBe(ROLLOUTS * (EPOCHS + 2) * B);
  }, 120_000);
});
