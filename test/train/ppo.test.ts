// The PPO stage end to end on a tiny byte-level model: a rule-based reward rises while the KL
// to the reference stays bounded; the first rollout's KL is exactly 0 (the reference is the
// policy's starting point: a frozen copy, or under LoRA the same base with its adapters
// detached); a run interrupted mid-rollout resumes bit-exact (losses, metrics, weights, value
// head); every metric the issue names is in metrics.jsonl; `patentgpt ppo --config` runs, with a
// reward function from a module; config errors name the field.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateStageConfig, type PpoConfig } from '../../src/train/config.js';
import { readMetrics, type MetricRecord } from '../../src/train/metrics.js';
import { claimFormatReward, type RewardFunction } from '../../src/train/ppo/rewards.js';
import { ppo } from '../../src/train/stages/ppo.js';
import { sha } from './child-run.js';
import { writeInit } from './sft-fixtures.js';

const repo = new URL('../../', import.meta.url).pathname;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ppo-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const initDir = path.join(root, 'init');
const promptFile = path.join(root, 'prompts.jsonl');

beforeAll(async () => {
  await writeInit(initDir, 11);
  const lines: string[] = [];
  const things = ['a hinge', 'a valve', 'a battery pack', 'a gear train', 'a sensor', 'a lens', 'a pump', 'a bracket'];
  for (let i = 0; i < 32; i++) lines.push(JSON.stringify({ prompt: `Write claim 1 for ${things[i % things.length]} (case ${i}).` }));
  lines.push(JSON.stringify({ unrelated: 1 })); // skipped: no prompt
  fs.writeFileSync(promptFile, lines.join('\n') + '\n');
});

function config(name: string, extra: Record<string, unknown> = {}, ppoExtra: Record<string, unknown> = {}): PpoConfig {
  return validateStageConfig({
    kind: 'ppo', name, runDir: path.join(root, name), model: initDir, tokenizer: 'byte', prompts: { path: promptFile }, reward: { function: 'claim-format' },
    seqLen: 96, batchSize: 16, steps: 8, optimizer: { lr: 2e-3, weightDecay: 0 }, schedule: { kind: 'constant' }, evalEvery: 0, checkpointEvery: 0,
    seed: 3, threads: 1, ...extra,
    ppo: { rolloutBatch: 32, epochs: 2, maxNewTokens: 16, temperature: 1, klCoef: 0.005, ...ppoExtra },
  }) as PpoConfig;
}

const metrics = (cfg: PpoConfig): MetricRecord[] => readMetrics(path.join(cfg.runDir, 'metrics.jsonl')).filter((m) => typeof m.loss === 'number');
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('patentgpt ppo (in process)', () => {
  it('raises a rule-based reward written in TypeScript while the KL to the reference stays bounded', async () => {
    // the dense part of a claim check: the share of the completion that is letters, spaces and claim punctuation
    const cleanText: RewardFunction = (_prompt, completion) => {
      const chars = [...completion];
      return chars.length === 0 ? 0 : chars.filter((c) => /[\p{L}\p{N} ,;:.()-]/u.test(c)).length / chars.length;
    };
    const cfg = config('rise', { steps: 160 }, { klCoef: 0.02 });
    const r = await ppo(cfg, { progress: null, rewardFunction: cleanText });
    expect(r.status).toBe('completed');
    expect(r.rollouts).toBe(40); // 160 steps / (2 epochs x 32 rows / 16)
    const ms = metrics(cfg);
    const perRollout = (k: string): number[] => ms.filter((_, i) => i % 4 === 0).map((m) => m[k] as number);
    const reward = perRollout('reward'), kl = perRollout('kl');
    const first = mean(reward.slice(0, 8)), last = mean(reward.slice(-8));
    expect(Math.abs(kl[0]!)).toBeLessThan(1e-5); // the policy starts as the reference (old log-probs from the engine: rounding apart)
    expect(last, `mean reward of the first 8 rollouts ${first}, of the last 8 ${last}`).toBeGreaterThan(first + 0.1);
    expect(Math.max(...kl), `KL per response ${kl.map((x) => x.toFixed(2)).join(' ')}`).toBeLessThan(40);
    for (const k of ['reward', 'kl', 'entropy', 'clipFraction', 'valueLoss', 'approxKl', 'responseLength', 'policyLoss', 'klCoef', 'eosRate'])
      expect(ms.every((m) => Number.isFinite(m[k] as number)), k).toBe(true);
    expect(fs.existsSync(path.join(cfg.runDir, 'report.svg'))).toBe(true);
  }, 120_000);

  for (const lora of [false, true]) {
    it(`resumes an interrupted run bit-exact, mid-rollout (rollout buffer, KL coefficient, sampling seeds${lora ? ', LoRA dropout masks' : ''})`, async () => {
      const extra = { steps: 10, ...(lora ? { lora: { r: 4, alpha: 8, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] }, optimizer: { lr: 1e-2, weightDecay: 0 } } : {}) };
      const full = config(`resume-full-${lora}`, extra, { adaptiveKl: { target: 1, horizon: 50 } });
      await ppo(full, { progress: null });
      const cut = config(`resume-cut-${lora}`, extra, { adaptiveKl: { target: 1, horizon: 50 } });
      const ac = new AbortController();
      const first = await ppo(cut, { progress: null, signal: ac.signal, onMetrics: (m) => void (m.step === 6 && ac.abort()) });
      expect(first.status).toBe('interrupted');
      expect(first.step).toBe(6); // 4 micro-batches a rollout: the buffer of rollout 2 is half trained
      const second = await ppo(cut, { progress: null });
      expect(second.resumedFrom).toBe(6);
      const a = metrics(full), b = metrics(cut);
      expect(b.map((m) => m.loss)).toEqual(a.map((m) => m.loss));
      for (const k of ['reward', 'kl', 'klCoef', 'valueLoss', 'clipFraction', 'approxKl']) expect(b.map((m) => m[k]), k).toEqual(a.map((m) => m[k]));
      expect(new Set(a.map((m) => m.klCoef)).size).toBeGreaterThan(1); // the adaptive coefficient moved (and came back with the resume)
      const ck = (cfg: PpoConfig, f: string): string => path.join(cfg.runDir, 'checkpoints', 'step-10', f);
      const weights = lora ? 'adapter_model.safetensors' : 'model.safetensors';
      expect(sha(ck(cut, weights))).toBe(sha(ck(full, weights)));
      expect(sha(ck(cut, 'value_head.safetensors'))).toBe(sha(ck(full, 'value_head.safetensors')));
    }, 120_000);
  }

  it('under LoRA the reference is the base with its adapters detached: KL 0 at the start, only the adapters and value head train', async () => {
    const cfg = config('lora', { steps: 8, lora: { r: 4, alpha: 8, targetModules: 'all-linear' }, optimizer: { lr: 1e-2, weightDecay: 0 } });
    const r = await ppo(cfg, { progress: null });
    expect(r.status).toBe('completed');
    expect(r.lora!.trainable).toBeLessThan(r.lora!.total / 4);
    const ms = metrics(cfg);
    expect(Math.abs(ms[0]!.kl as number)).toBeLessThan(1e-5); // rounding apart: engine vs packed forward
    expect(ms[4]!.kl as number).toBeGreaterThan(1e-3); // the second rollout's policy has moved off the base
    const dir = path.join(cfg.runDir, 'checkpoints', 'step-8');
    expect(fs.readdirSync(dir)).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json', 'value_head.safetensors']));
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(false);
    expect(fs.readdirSync(r.lora!.final!.adapter)).toEqual(expect.arrayContaining(['adapter_model.safetensors', 'adapter_config.json']));
    // as sft and dpo: final/ is the base model folder, final/adapter/ the adapter over it
    expect(r.lora!.final!.model).toBe(path.join(path.resolve(cfg.runDir), 'final'));
    expect(fs.readdirSync(r.lora!.final!.model)).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'adapter']));
  }, 120_000);

  it('the built-in claim check scores form, not content', () => {
    expect(claimFormatReward('', '1. A hinge comprising a pin and a leaf.')).toBe(1);
    expect(claimFormatReward('', 'A hinge')).toBeLessThan(0.3);
    expect(claimFormatReward('', '1. 2.')).toBeLessThan(0.2); // a stub earns little (PPO found this one)
    expect(claimFormatReward('', '')).toBe(0);
  });
});

describe('patentgpt ppo (command line)', () => {
  const tsx = pathToFileURL(path.join(repo, 'node_modules/tsx/dist/loader.mjs')).href;
  const cli = (args: string[]) => spawnSync(process.execPath, ['--import', tsx, path.join(repo, 'src/cli/main.ts'), 'ppo', ...args], { encoding: 'utf8', cwd: root });

  it('runs a config whose reward is a function exported by a module', () => {
    fs.writeFileSync(path.join(root, 'my-reward.mjs'), 'export function score(prompt, completion) { return completion.split(" ").length / 10; }\n');
    const file = path.join(root, 'cli.json');
    fs.writeFileSync(file, JSON.stringify({
      kind: 'ppo', name: 'cli', model: initDir, tokenizer: 'byte', prompts: { path: 'prompts.jsonl' }, reward: { module: 'my-reward.mjs', export: 'score' },
      seqLen: 96, batchSize: 8, steps: 4, optimizer: { lr: 1e-3 }, schedule: { kind: 'constant' }, evalEvery: 0, checkpointEvery: 2, threads: 1,
      ppo: { rolloutBatch: 8, epochs: 2, maxNewTokens: 8, missingEosPenalty: 1 },
    }));
    const r = cli(['--config', file, '--quiet']);
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { status: string; step: number };
    expect(summary).toMatchObject({ status: 'completed', step: 4 });
    const ms = readMetrics(path.join(root, 'runs', 'cli', 'metrics.jsonl'));
    expect(ms.filter((m) => typeof m.reward === 'number')).toHaveLength(4);
  }, 120_000);

  it('refuses config errors naming the field', () => {
    const file = path.join(root, 'bad.json');
    const write = (o: Record<string, unknown>): void => fs.writeFileSync(file, JSON.stringify({
      kind: 'ppo', name: 'bad', model: initDir, tokenizer: 'byte', prompts: { path: 'prompts.jsonl' }, reward: { function: 'claim-format' },
      seqLen: 96, batchSize: 8, steps: 4, optimizer: { lr: 1e-3 }, ...o, ppo: { maxNewTokens: 8, ...(o.ppo as object) },
    }));
    write({ ppo: { rolloutBatch: 12 } });
    let r = cli(['--config', file]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/ppo\.rolloutBatch: 12 is not a multiple of the minibatch/);
    write({ reward: { function: 'nope' } });
    r = cli(['--config', file]);
    expect(r.stderr).toMatch(/reward\.function: "nope" is not a built-in reward/);
    write({ ppo: { klEstimator: 'k2' } });
    r = cli(['--config', file]);
    expect(r.stderr).toMatch(/ppo\.klEstimator: must be "k1" or "k3"/);
  }, 60_000);
});
