// The demo's stage configs, written as files into the demo folder (the same JSON a user passes
// to `patentgpt pretrain|sft|reward|ppo|dpo --config`), from the budget and the tokenizer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DemoBudget } from './budget.js';

export interface StageInputs {
  /** The demo folder (run folders go to <dir>/runs/<name>). */
  dir: string;
  data: string;
  tokenizer: string;
  vocabSize: number;
  prepOutput: string;
  budget: DemoBudget;
  /** The reward model's folder (its run's last checkpoint), for PPO. */
  rewardModel?: string;
}

type Json = Record<string, unknown>;

const common = (b: DemoBudget, steps: number, evalEvery: number): Json => ({
  steps,
  gradAccum: 1,
  evalEvery,
  checkpointEvery: Math.max(1, Math.ceil(steps / 2)),
  keepCheckpoints: 1,
  logEvery: 1,
  threads: 2,
});

function model(s: StageInputs, extra: Json = {}): Json {
  const m = s.budget.model;
  return { vocabSize: s.vocabSize, ...m, ropeTheta: 10000, maxSeqLen: s.budget.seqLen.stage1, ...extra };
}

export const runDir = (s: StageInputs, name: string): string => path.join(s.dir, 'runs', name);

/** Every stage's config by name (stage1, moe, stage2, sft, reward, ppo, dpo). */
export function stageConfigs(s: StageInputs): Record<string, Json> {
  const b = s.budget;
  const st = b.steps;
  const ev = (steps: number): number => Math.max(1, Math.floor(steps / 6));
  const manifests = (stage: string): string[] => [path.join(s.prepOutput, stage, 'part-0')];
  const adam = (lr: number, minLr: number, warm: number, wd = 0.1): Json => ({
    optimizer: { lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: wd, gradClip: 1.0 },
    schedule: { kind: 'cosine', warmupSteps: warm, minLr },
  });
  const chat = { tokenizer: s.tokenizer, chatTemplate: 'llama2' };
  return {
    stage1: {
      comment: 'Stage 1: the prepared IP corpus at a short context; validation on documents held out by hash (after dedup, every document once).',
      name: 'stage1', runDir: runDir(s, 'stage1'), init: path.join(s.dir, 'init'),
      model: model(s), tokenizer: s.tokenizer,
      data: { manifests: manifests('stage1'), valFraction: 0.08 },
      seqLen: b.seqLen.stage1, batchSize: b.batch.stage1, ...adam(0.003, 0.0003, Math.min(15, Math.ceil(st.stage1 / 10))),
      ...common(b, st.stage1, ev(st.stage1)), evalBatches: 4, seed: 1,
    },
    moe: {
      comment: 'The SMoE variant of stage 1 (PatentGPT-1.0-MoE in miniature): 4 SwiGLU experts of half the width, top-2, load-balancing and z-loss; expert load per layer in metrics.jsonl.',
      name: 'moe', runDir: runDir(s, 'moe'),
      model: model(s, { ffnDim: Math.round(b.model.ffnDim / 2), numExperts: 4, topK: 2, routerAuxLossCoef: 0.02, routerZLossCoef: 0.001 }), tokenizer: s.tokenizer,
      data: { manifests: manifests('stage1'), valFraction: 0.08 },
      seqLen: b.seqLen.stage1, batchSize: b.batch.stage1, ...adam(0.004, 0.0004, Math.min(10, Math.ceil(st.moe / 10))),
      ...common(b, st.moe, ev(st.moe)), evalBatches: 4, seed: 7,
    },
    stage2: {
      comment: "Stage 2: from stage 1's weights, the context extended 4x with a larger RoPE base, a mixture shifted toward patents.",
      name: 'stage2', runDir: runDir(s, 'stage2'), init: runDir(s, 'stage1'),
      model: model(s), tokenizer: s.tokenizer, context: { ropeTheta: 40000 },
      data: { manifests: manifests('stage2'), valFraction: 0.08 },
      seqLen: b.seqLen.stage2, batchSize: b.batch.stage2, ...adam(0.001, 0.0001, Math.min(5, Math.ceil(st.stage2 / 10))),
      ...common(b, st.stage2, ev(st.stage2)), evalBatches: 4, seed: 2,
    },
    sft: {
      comment: 'SFT on the bundled IP instructions (LLaMA-2 chat format, loss on the answers only).',
      kind: 'sft', name: 'sft', runDir: runDir(s, 'sft'), init: runDir(s, 'stage2'),
      model: model(s), ...chat,
      data: { sources: [{ path: path.join(s.data, 'sft.jsonl'), layout: 'alpaca' }], valFraction: 0.08, packing: 'pack', strategy: 'bfd' },
      seqLen: b.seqLen.sft, batchSize: b.batch.sft, ...adam(0.001, 0.0001, Math.min(10, Math.ceil(st.sft / 10)), 0),
      ...common(b, st.sft, ev(st.sft)), evalBatches: 4, seed: 1,
    },
    reward: {
      comment: "Reward model: the SFT model with a scalar head, real abstracts preferred over scrambled or off-topic ones.",
      kind: 'reward', name: 'reward', runDir: runDir(s, 'reward'), init: runDir(s, 'sft'),
      model: model(s), ...chat,
      data: { sources: [{ path: path.join(s.data, 'preferences.jsonl') }], valFraction: 0.15, maxLength: b.seqLen.sft },
      reward: { margin: 0, centerRewardsCoefficient: 0.01 },
      seqLen: b.seqLen.sft, batchSize: b.batch.reward, ...adam(0.001, 0.0001, Math.min(5, Math.ceil(st.reward / 10)), 0),
      ...common(b, st.reward, ev(st.reward)), evalBatches: 4, seed: 1,
    },
    ppo: {
      comment: 'PPO: the SFT model as policy and frozen reference, rollouts by the engine, scored by the reward model, KL-penalised (coefficient 0.1; with 0.05 and a penalty for answers without EOS the policy learned to end every answer at once).',
      kind: 'ppo', name: 'ppo', runDir: runDir(s, 'ppo'), init: runDir(s, 'sft'),
      model: model(s), ...chat,
      prompts: { path: path.join(s.data, 'ppo-prompts.jsonl') },
      reward: { model: s.rewardModel ?? path.join(runDir(s, 'reward'), 'final') },
      seqLen: b.seqLen.sft, batchSize: b.ppo.rolloutBatch / 2,
      optimizer: { lr: 0.0003, weightDecay: 0, gradClip: 1.0 }, schedule: { kind: 'constant', warmupSteps: 0 },
      ppo: {
        rolloutBatch: b.ppo.rolloutBatch, epochs: 2, maxNewTokens: b.ppo.maxNewTokens, temperature: 1.0, klCoef: 0.1, klEstimator: 'k1',
        gamma: 1.0, lam: 0.95, cliprange: 0.2, cliprangeValue: 0.2, vfCoef: 0.1,
      },
      ...common(b, st.ppo, 0), seed: 1,
    },
    dpo: {
      comment: 'DPO (with --align dpo): the SFT model trained to prefer the real abstracts, sigmoid loss, beta 0.1.',
      kind: 'dpo', name: 'dpo', runDir: runDir(s, 'dpo'), init: runDir(s, 'sft'),
      model: model(s), ...chat,
      data: { sources: [{ path: path.join(s.data, 'preferences.jsonl') }], valFraction: 0.15 },
      dpo: { beta: 0.1, loss: 'sigmoid' },
      seqLen: b.seqLen.sft, batchSize: b.batch.reward, ...adam(0.0005, 0.00005, Math.min(5, Math.ceil(st.dpo / 10)), 0),
      ...common(b, st.dpo, ev(st.dpo)), evalBatches: 4, seed: 1,
    },
  };
}

/** Writes a stage's config to <dir>/configs/<name>.json and returns the path. */
export function writeStageConfig(s: StageInputs, name: string, cfg: Json): string {
  const file = path.join(s.dir, 'configs', `${name}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n');
  return file;
}
