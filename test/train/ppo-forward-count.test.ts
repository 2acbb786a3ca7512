// No policy forward scores a PPO rollout: the old log-probs and values come from the generation
// (the engine hands over each sampled token's logits and hidden row; test/train/ppo-rollout-scores
// checks their numbers), as TRL takes its old log-probs from generate's scores. Counted here on
// the real model: sequences through LlamaForCausalLM.hidden (the packed forward; the engine runs
// forwardPaged) per rollout are epochs x rolloutBatch of training, plus under LoRA the reference's
// packed pass (the base with its adapters detached); a frozen reference copy scores through its own
// engine (Engine.score, forwardPaged), so no packed forward of it. The first loss of each rollout then sees the engine's numbers against
// the training forward's: a ratio within rounding of 1.
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

describe('PPO: the rollout is scored by the reference forward alone', () => {
  it('epochs x B of training per rollout (the reference copy scores through its engine); the first loss sees a ratio within rounding of 1', async () => {
    const cfg = config('rollout-scores');
    expect(await countedRun(cfg)).toBe(ROLLOUTS * EPOCHS * B);
    const ms = readMetrics(path.join(cfg.runDir, 'metrics.jsonl')).filter((m) => typeof m.loss === 'number');
    const perRollout = EPOCHS * (B / MB);
    for (let r = 0; r < ROLLOUTS; r++) {
      const m = ms[r * perRollout]!;
      expect(Math.abs((m.ratio as number) - 1), `first micro-batch of rollout ${r}`).toBeLessThan(1e-4);
      expect(m.approxKl as number, `first micro-batch of rollout ${r}`).toBeLessThan(1e-8);
      expect(m.clipFraction, `first micro-batch of rollout ${r}`).toBe(0);
      expect(ms[r * perRollout + 1]!.approxKl as number, `second micro-batch of rollout ${r}: the weights moved`).toBeGreaterThan(1e-6);
    }
  }, 120_000);

  it('under LoRA dropout: the reference (B, packed) + epochs x B of training (the engine samples without masks, as a no-grad forward would)', async () => {
    const cfg = config('lora-dropout', { lora: { r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] } });
    expect(await countedRun(cfg)).toBe(ROLLOUTS * (EPOCHS + 1) * B);
  }, 120_000);
});
