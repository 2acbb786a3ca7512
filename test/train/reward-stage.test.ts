// The reward stage end to end (src/train/stages/reward.ts, `patentgpt reward`):
//   - on human vs machine-written patent abstracts (../shared/data/us-abstract-claim-genpairs:
//     the human abstract chosen over Llama-2's), a tiny model trained from random weights reaches
//     a held-out accuracy at least 0.2 above chance (0.5) in 80 steps;
//   - every checkpoint is a reward folder (LlamaForSequenceClassification) we load back with the
//     trained weights; a run interrupted at step 3 and started again gives the uninterrupted run's
//     losses and weights bit for bit;
//   - LoRA trains the adapters and the score head only, and a completed run leaves final/, the
//     merged reward folder (the decoder moved, the embedding did not);
//   - the CLI runs the example's shape and config errors name the field.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, savePretrained, validateConfig } from '../../src/models/index.js';
import { loadPreferenceData, preferenceEvalBatches, type PreferenceExample } from '../../src/data/preference/index.js';
import { ScoreHeadModel, bradleyTerryLoss, loadRewardModel, packSequences, rewardModelFromCausalLM } from '../../src/models/reward.js';
import { noGrad } from '../../src/tensor/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { validateStageConfig, type RewardConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { reward, rewardLoss } from '../../src/train/stages/reward.js';
import { sftRenderer } from '../../src/train/stages/sft.js';
import { writeClaimPairs } from './sft-fixtures.js';

const repo = new URL('../../', import.meta.url).pathname;
const main = path.join(repo, 'src/cli/main.ts');
const genpairs = path.resolve(repo, '../shared/data/us-abstract-claim-genpairs/Llama2_A61B_1000.csv');
const haveData = fs.existsSync(genpairs);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-reward-stage-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const initDir = path.join(root, 'init');
const pairsFile = path.join(root, 'pairs.jsonl');

const modelCfg = validateConfig({ vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 128, maxSeqLen: 128 });


beforeAll(async () => {
  const m = new LlamaForCausalLM(modelCfg, { seed: 1 });
  await savePretrained(m, initDir, { tokenizer: new ByteTokenizer() });
  m.dispose();
  writeClaimPairs(pairsFile, 48);
});

function config(name: string, extra: Record<string, unknown> = {}): RewardConfig {
  const cfg = validateStageConfig({
    kind: 'reward', name, model: initDir, init: initDir, tokenizer: 'byte', chatTemplate: 'llama2',
    data: { sources: [pairsFile], valFraction: 0.25 },
    seqLen: 96, batchSize: 4, steps: 6, optimizer: { lr: 0.002, weightDecay: 0 }, schedule: { kind: 'constant' },
    evalEvery: 0, evalBatches: 4, checkpointEvery: 3, keepCheckpoints: 0, seed: 2, threads: 1, ...extra,
  }) as RewardConfig;
  cfg.runDir = path.join(root, name);
  return cfg;
}

/** The share of pairs a model scores chosen over rejected. */
function accuracyOf(m: ScoreHeadModel, pairs: PreferenceExample[]): number {
  return noGrad(() => {
    let right = 0;
    for (const b of preferenceEvalBatches(pairs, 16)) {
      const s = m.scores(b);
      const v = s.toArray() as Float32Array;
      s.dispose();
      for (let i = 0; i < b.pairs; i++) if (v[i]! > v[b.pairs + i]!) right++;
    }
    return right / pairs.length;
  });
}

const weightsHash = (dir: string): string => createHash('sha256').update(fs.readFileSync(path.join(dir, 'model.safetensors'))).digest('hex');
const losses = (runDir: string): number[] => readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.loss !== undefined).map((x) => x.loss!);

describe('patentgpt reward', () => {
  it.skipIf(!haveData)('human vs Llama-2 patent abstracts: held-out accuracy >= 0.7 (chance 0.5) after 80 steps from random weights', async () => {
    const cfg = config('genpairs', {
      data: {
        sources: [{ path: genpairs, fields: { chosen: 'patent_abstract', rejected: 'generated_abstract' }, promptTemplate: 'Abstract:', limit: 480 }],
        valFraction: 0.2, maxLength: 80,
      },
      seqLen: 80, batchSize: 16, steps: 80, optimizer: { lr: 0.003, weightDecay: 0 }, schedule: { kind: 'cosine', warmupSteps: 5 },
      evalEvery: 40, evalBatches: 8, checkpointEvery: 0, keepCheckpoints: 1,
    });
    // the starting point: the random decoder with the head the stage draws (seed 2), on the same held-out pairs
    const data = await loadPreferenceData({ sources: cfg.data.sources, renderer: sftRenderer(cfg, new ByteTokenizer()), valFraction: 0.2, maxLength: 80 });
    const start = await rewardModelFromCausalLM(initDir, { seed: cfg.seed });
    const before = accuracyOf(start, data.val);
    start.dispose();
    const r = await reward(cfg, { progress: null });
    expect(r.status).toBe('completed');
    expect(r.data.val).toBe(data.val.length);
    expect(r.data.val).toBeGreaterThan(60);
    const evals = readMetrics(path.join(cfg.runDir, 'metrics.jsonl')).filter((x) => x.valLoss !== undefined) as Record<string, unknown>[];
    expect(evals.map((x) => x.step)).toEqual([40, 80]);
    const acc = evals.at(-1)!['val.accuracy'] as number;
    console.log(`reward on genpairs: held-out accuracy ${before.toFixed(3)} (start) -> ${evals.map((x) => (x['val.accuracy'] as number).toFixed(3)).join(' -> ')} over ${r.data.val} pairs, valLoss ${(evals.at(-1)!.valLoss as number).toFixed(3)}`);
    expect(acc).toBeGreaterThanOrEqual(0.7);
    expect(acc).toBeGreaterThan(before + 0.15); // it rose, it did not start there
    // val.accuracy is the share over every held-out pair (the short last batch weighs by its pairs)
    const trained = await loadRewardModel(path.join(cfg.runDir, 'checkpoints', 'step-80'));
    expect(acc).toBeCloseTo(accuracyOf(trained, data.val), 9);
    trained.dispose();
    expect(evals.at(-1)!.valLoss as number).toBeLessThan(Math.log(2)); // below the loss of a model that cannot tell
  }, 120_000);

  it('checkpoints are reward folders; a run interrupted at step 3 and started again equals the uninterrupted run bit for bit', async () => {
    const a = config('straight');
    const ra = await reward(a, { progress: null });
    expect(ra).toMatchObject({ status: 'completed', step: 6, initFrom: 'causal-lm' });
    const ck = path.join(a.runDir, 'checkpoints', 'step-6');
    const folder = JSON.parse(fs.readFileSync(path.join(ck, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(folder).toMatchObject({ architectures: ['LlamaForSequenceClassification'], id2label: { 0: 'LABEL_0' }, pad_token_id: 258 });
    const m = await loadRewardModel(ck);
    expect(m.padTokenId).toBe(258);
    m.dispose();
    const recs = readMetrics(path.join(a.runDir, 'metrics.jsonl')) as Record<string, unknown>[];
    const step = recs.find((x) => x.loss !== undefined)!;
    for (const k of ['accuracy', 'margin', 'rewardChosen', 'rewardRejected']) expect(typeof step[k], k).toBe('number');
    expect(typeof recs.find((x) => x.valLoss !== undefined)!['val.accuracy']).toBe('number');

    const b = config('interrupted');
    const ac = new AbortController();
    const first = await reward(b, { progress: null, signal: ac.signal, onMetrics: (x) => void (x.step === 3 && x.loss !== undefined && ac.abort()) });
    expect(first.status).toBe('interrupted');
    expect(first.step).toBe(3);
    const second = await reward(b, { progress: null });
    expect(second).toMatchObject({ status: 'completed', step: 6, initFrom: 'checkpoint' });
    expect(losses(b.runDir)).toEqual(losses(a.runDir));
    expect(weightsHash(path.join(b.runDir, 'checkpoints', 'step-6'))).toBe(weightsHash(ck));
  }, 120_000);

  it('LoRA: only the adapters and the score head train; final/ is the merged reward folder', async () => {
    const cfg = config('lora', { lora: { r: 4, alpha: 8, targetModules: 'all-linear' }, optimizer: { lr: 0.01, weightDecay: 0 }, checkpointEvery: 0 });
    const r = await reward(cfg, { progress: null });
    expect(r.status).toBe('completed');
    expect(r.lora!.layers).toBe(2 * 7); // q k v o gate up down in 2 layers; the head takes none
    expect(r.lora!.trainable).toBeLessThan(r.lora!.total / 5);
    const ck = path.join(cfg.runDir, 'checkpoints', 'step-6');
    expect(fs.readdirSync(ck)).toContain('adapter_model.safetensors');
    const final = await loadRewardModel(r.lora!.final!.model);
    const seqs = [[256, 65, 66, 67], [256, 70, 71]];
    noGrad(() => {
      const s = final.scores(packSequences(seqs));
      expect(Array.from(s.toArray() as Float32Array).every(Number.isFinite)).toBe(true);
      s.dispose();
    });
    // the merged decoder moved away from init (adapters folded in); the embedding (no adapter) did not
    const lm = new LlamaForCausalLM(modelCfg, { seed: 1 });
    expect(final.getParameter('model.embed_tokens.weight')!.toArray()).toEqual(lm.getParameter('model.embed_tokens.weight')!.toArray());
    expect(final.getParameter('model.layers.0.self_attn.q_proj.weight')!.toArray()).not.toEqual(lm.getParameter('model.layers.0.self_attn.q_proj.weight')!.toArray());
    for (const x of [final, lm]) x.dispose();
    // a LoRA run interrupted at step 3 resumes (init again, adapters and head from the checkpoint) with the same losses
    const b = config('lora-interrupted', { lora: { r: 4, alpha: 8, targetModules: 'all-linear' }, optimizer: { lr: 0.01, weightDecay: 0 }, checkpointEvery: 0 });
    const ac = new AbortController();
    expect((await reward(b, { progress: null, signal: ac.signal, onMetrics: (x) => void (x.step === 3 && x.loss !== undefined && ac.abort()) })).status).toBe('interrupted');
    expect((await reward(b, { progress: null })).status).toBe('completed');
    expect(losses(b.runDir)).toEqual(losses(cfg.runDir));
    expect(weightsHash(path.join(b.runDir, 'final'))).toBe(weightsHash(path.join(cfg.runDir, 'final')));
  }, 120_000);

  it('an SMoE (Mixtral) reward model trains with the router losses in its loss and the expert load in metrics', async () => {
    const moeCfg = validateConfig({ ...modelCfg, ffnDim: 64, numExperts: 4, topK: 2, routerAuxLossCoef: 0.02 });
    const dir = path.join(root, 'moe-init');
    const lm = new LlamaForCausalLM(moeCfg, { seed: 1 });
    await savePretrained(lm, dir, { tokenizer: new ByteTokenizer() });
    lm.dispose();
    const cfg = config('moe', { model: dir, init: dir, steps: 2, checkpointEvery: 0 });
    const r = await reward(cfg, { progress: null });
    expect(r.status).toBe('completed');
    const step = readMetrics(path.join(cfg.runDir, 'metrics.jsonl')).find((x) => x.loss !== undefined) as Record<string, unknown>;
    expect(Object.keys(step.load_balance_loss as Record<string, number>).sort()).toEqual(['0', '1']);
    expect(Object.keys(step.expert_load_max_over_mean as Record<string, number>).sort()).toEqual(['0', '1']);
    const folder = JSON.parse(fs.readFileSync(path.join(cfg.runDir, 'checkpoints', 'step-2', 'config.json'), 'utf8')) as { architectures: string[] };
    expect(folder.architectures).toEqual(['MixtralForSequenceClassification']);
    // the loss is Bradley-Terry plus every layer's load-balancing loss
    const m = new ScoreHeadModel(moeCfg, { seed: 3 });
    const batch = { pairs: 2, ...packSequences([[256, 65, 66], [256, 70, 71, 72], [256, 80], [256, 90, 91]]) };
    noGrad(() => {
      const out = rewardLoss(m, batch, { reward: { margin: 0, centerRewardsCoefficient: 0, scoreInitStd: 0.02 } });
      const s = m.scores(batch);
      const bt = bradleyTerryLoss(s.narrow(0, 2), s.narrow(2, 2)).item();
      const aux = Object.values(out.metrics!.load_balance_loss as Record<string, number>).reduce((x, y) => x + y, 0);
      expect(aux).toBeGreaterThan(0);
      expect(out.loss.item()).toBeCloseTo(bt + aux, 6);
    });
    m.dispose();
  }, 60_000);

  it('data.truncation reaches the data: keep_end keeps the responses that keep_start cuts off', async () => {
    const run = async (truncation: string) =>
      (await reward(config(`trunc-${truncation}`, { data: { sources: [pairsFile], valFraction: 0.25, maxLength: 46, truncation }, steps: 1, checkpointEvery: 0 }), { progress: null })).data;
    const start = await run('keep_start'), end = await run('keep_end');
    const skipped = (d: { skipped: unknown }): number => Object.values(d.skipped as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(skipped(start)).toBeGreaterThan(0); // a long prompt leaves no response token in 46
    expect(skipped(end)).toBe(0);
    expect(end.train + end.val).toBe(48);
  }, 60_000);

  it('config errors name the field: missing data and init, unknown reward fields, an adapter on the score head', async () => {
    const base = { kind: 'reward', name: 'bad', model: { ...modelCfg }, tokenizer: 'byte', seqLen: 96, batchSize: 2, steps: 1, optimizer: { lr: 0.001 } };
    expect(() => validateStageConfig({ ...base, init: initDir })).toThrow(/data: missing: give data\.sources/);
    expect(() => validateStageConfig({ ...base, data: { sources: [pairsFile] } })).toThrow(/init: missing: a reward model starts from trained weights/);
    expect(() => validateStageConfig({ ...base, init: initDir, data: { sources: [pairsFile] }, reward: { beta: 1 } })).toThrow(/reward\.beta: unknown field/);
    expect(() => validateStageConfig({ ...base, init: initDir, data: { sources: [pairsFile] }, reward: { centerRewardsCoefficient: -1 } })).toThrow(/reward\.centerRewardsCoefficient: must be a number >= 0/);
    // a LoRA SFT checkpoint (an adapter alone) as init: told to merge it first
    const adapterOnly = path.join(root, 'adapter-only');
    fs.mkdirSync(adapterOnly, { recursive: true });
    fs.writeFileSync(path.join(adapterOnly, 'adapter_config.json'), '{}');
    await expect(reward(config('from-adapter', { init: adapterOnly }), { progress: null })).rejects.toThrow(/holds a LoRA adapter, not a model; merge it into its base first \(patentgpt sft merge/);
    const cfg = config('score-adapter', { lora: { r: 2, targetModules: ['score'] } });
    await expect(reward(cfg, { progress: null })).rejects.toThrow(/lora\.targetModules: .*score/);
  }, 60_000);

  it('the CLI trains and prints the summary; config errors name the field', () => {
    const file = path.join(root, 'cli.json');
    fs.writeFileSync(file, JSON.stringify({
      kind: 'reward', name: 'cli', model: initDir, init: initDir, tokenizer: 'byte', data: { sources: [pairsFile], valFraction: 0.25 },
      seqLen: 96, batchSize: 4, steps: 2, optimizer: { lr: 0.001 }, checkpointEvery: 0, threads: 1, reward: { margin: 0.1 },
    }));
    const run = (cfgFile: string) => spawnSync(process.execPath, ['--import', 'tsx', main, 'reward', '--config', cfgFile, '--run-dir', path.join(root, 'cli-run'), '--quiet'], { encoding: 'utf8', cwd: repo });
    const r = run(file);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toMatchObject({ event: 'summary', status: 'completed', step: 2 });
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')) as object, reward: { margin: 'big' } }));
    const bad = run(file);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/reward\.margin: must be a number/);
  }, 120_000);
});
