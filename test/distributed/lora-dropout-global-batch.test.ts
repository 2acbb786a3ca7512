// LoRA SFT with adapter dropout 0.1 over 2 real MPI ranks (launch --global-batch) is the 1-rank
// run with the same global batch: the masks are keyed by each token's global row, position and
// the optimizer step (src/nn/dropout-rows.ts), not drawn from a per-rank stream, so every logged
// loss agrees within 1e-6 and the final adapter is the same file. A checkpoint taken at step 2
// resumes on the other number of ranks with the uninterrupted run's losses and adapter (nothing
// of the masks is saved: they follow from the step and the rows). A run without dropout shows
// the masks matter. Reward and DPO under LoRA dropout key theirs by global pair (chosen 2g,
// rejected 2g + 1), PPO by rollout row and step (two epochs over a rollout: two masks), and agree
// the same way. (The models themselves have no dropout: LoRA's is the
// only one there is.)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha, trainLosses } from '../train/child-run.js';
import { writeAlpaca, writeClaimPairs, writeInit } from '../train/sft-fixtures.js';
import { cli, mpiMissing, cutBackTo, expectStepsClose } from './mpi-helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-lora-drop-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const init = path.join(root, 'init');
const STEPS = 4;

function config(dropout: number): string {
  const file = path.join(root, `sft-${dropout}.json`);
  fs.writeFileSync(file, JSON.stringify({
    kind: 'sft', name: 'sft', model: init, init, tokenizer: 'byte', batchSize: 2, gradAccum: 2, steps: STEPS, schedule: { kind: 'constant', warmupSteps: 0 },
    evalEvery: 0, checkpointEvery: 2, keepCheckpoints: 3, seed: 4, threads: 1, seqLen: 128,
    data: { sources: [path.join(root, 'reverse.jsonl')], valFraction: 0 }, optimizer: { lr: 0.02, weightDecay: 0 },
    lora: { r: 4, alpha: 8, dropout, targetModules: 'all-linear' },
  }));
  return file;
}

const one = (run: string, dropout = 0.1) => cli(['sft', '--config', config(dropout), '--run-dir', run, '--quiet']);
const two = (run: string) => cli(['launch', '--nproc', '2', '--global-batch', '--', 'sft', '--config', config(0.1), '--run-dir', run, '--quiet']);
const adapter = (run: string): string => sha(path.join(run, 'checkpoints', `step-${STEPS}`, 'adapter_model.safetensors'));

/**
 * Runs `stage` with its noise on at 1 and 2 ranks (launch --global-batch) and off at 1 (runs
 * `name`-one, -two, -plain): 2 ranks give 1 rank's losses (within 1e-6) and the same `weights`
 * file after `steps`, and the noise moves the losses by more than `minEffect` (the masks matter).
 */
async function expectTwoRanksMatchOne(
  stage: string, name: string, configWith: (noise: boolean) => string, steps: number, weights: string, minEffect: number,
): Promise<void> {
  const run = (d: string, n: number, noise = true) =>
    cli([...(n === 2 ? ['launch', '--nproc', '2', '--global-batch', '--'] : []), stage, '--config', configWith(noise), '--run-dir', path.join(root, d), '--quiet']);
  const [ra, rb, rc] = await Promise.all([run(`${name}-one`, 1), run(`${name}-two`, 2), run(`${name}-plain`, 1, false)]);
  for (const r of [ra, rb, rc]) expect(r.code, r.stderr + r.stdout).toBe(0);
  const ref = trainLosses(path.join(root, `${name}-one`));
  expect(ref).toHaveLength(steps);
  expectStepsClose(trainLosses(path.join(root, `${name}-two`)), ref, '2 ranks');
  const file = (d: string): string => sha(path.join(root, d, 'checkpoints', `step-${steps}`, weights));
  expect(file(`${name}-two`)).toBe(file(`${name}-one`));
  const plain = trainLosses(path.join(root, `${name}-plain`));
  expect(Math.max(...plain.map((x, i) => Math.abs(x - ref[i]!))), 'the noise changes the losses').toBeGreaterThan(minEffect);
}

type PairKind = 'reward' | 'dpo';
const LAYERS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

function ppoConfig(dropout: number): string {
  const file = path.join(root, `ppo-${dropout}.json`);
  fs.writeFileSync(file, JSON.stringify({
    kind: 'ppo', name: 'ppo', model: init, init, tokenizer: 'byte', prompts: { path: path.join(root, 'prompts.jsonl') }, reward: { function: 'claim-format' },
    seqLen: 96, batchSize: 4, gradAccum: 2, steps: 6, optimizer: { lr: 1e-2, weightDecay: 0 }, schedule: { kind: 'constant' },
    evalEvery: 0, checkpointEvery: 6, keepCheckpoints: 5, seed: 3, threads: 1,
    ppo: { rolloutBatch: 16, epochs: 2, maxNewTokens: 16, temperature: 1, klCoef: 0.005 },
    lora: { r: 4, alpha: 8, dropout, targetModules: LAYERS },
  }));
  return file;
}

function pairConfig(kind: PairKind, dropout: number): string {
  const file = path.join(root, `${kind}-${dropout}.json`);
  fs.writeFileSync(file, JSON.stringify({
    kind, name: kind, model: init, init, tokenizer: 'byte', batchSize: 2, gradAccum: 2, steps: STEPS, schedule: { kind: 'constant', warmupSteps: 0 },
    evalEvery: 0, checkpointEvery: 2, keepCheckpoints: 3, seed: 4, threads: 1, seqLen: 96,
    data: { sources: [path.join(root, 'pairs.jsonl')], shuffle: true, valFraction: 0 }, optimizer: { lr: 0.02, weightDecay: 0 },
    lora: { r: 4, alpha: 8, dropout, targetModules: LAYERS }, ...(kind === 'dpo' ? { dpo: { beta: 0.5 } } : {}),
  }));
  return file;
}

beforeAll(async () => {
  if (mpiMissing !== null) return;
  writeAlpaca(path.join(root, 'reverse.jsonl'), 96);
  writeClaimPairs(path.join(root, 'pairs.jsonl'), 24);
  const things = ['hinge', 'valve', 'battery', 'gear', 'sensor', 'lens', 'pump', 'bracket'];
  fs.writeFileSync(path.join(root, 'prompts.jsonl'), Array.from({ length: 24 }, (_, i) => JSON.stringify({ prompt: `Claim: ${things[i % 8]} ${i}` })).join('\n') + '\n');
  await writeInit(init);
});

describe.skipIf(mpiMissing !== null)('LoRA dropout under launch --global-batch', () => {
  it('2 ranks = 1 rank with lora.dropout 0.1 (losses within 1e-6, the same adapter), and resumes across world sizes reproduce it', async () => {
    const a = path.join(root, 'one'); // 1 rank, later cut back and resumed on 2
    const b = path.join(root, 'two'); // 2 ranks, later cut back and resumed on 1
    const c = path.join(root, 'no-dropout');
    const [ra, rb, rc] = await Promise.all([one(a), two(b), one(c, 0)]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr + rb.stdout).toBe(0);
    expect(rc.code, rc.stderr).toBe(0);
    const ref = trainLosses(a);
    expect(ref).toHaveLength(STEPS);
    expectStepsClose(trainLosses(b), ref, '2 ranks');
    const final = adapter(a);
    expect(adapter(b), 'the 2-rank adapter').toBe(final);
    // the masks matter: without dropout the run goes elsewhere
    const plain = trainLosses(c);
    expect(Math.max(...plain.map((x, i) => Math.abs(x - ref[i]!))), 'dropout changes the losses').toBeGreaterThan(1e-4);
    expect(adapter(c)).not.toBe(final);

    cutBackTo(a, 2);
    cutBackTo(b, 2);
    const [ra2, rb2] = await Promise.all([two(a), one(b)]);
    expect(ra2.code, ra2.stderr + ra2.stdout).toBe(0);
    expect(rb2.code, rb2.stderr).toBe(0);
    for (const run of [a, b]) {
      expectStepsClose(trainLosses(run), ref, `resumed ${run}`);
      expect(adapter(run), `resumed ${run}`).toBe(final);
    }
    // on 1 rank the steps after the resume are the uninterrupted 1-rank run's, bit for bit
    expect(trainLosses(b).slice(2)).toEqual(ref.slice(2));
  }, 300_000);

  for (const kind of ['reward', 'dpo'] as const)
    it(`${kind}: 2 ranks = 1 rank with lora.dropout 0.1 (losses within 1e-6, the same adapter)`, async () => {
      await expectTwoRanksMatchOne(kind, kind, (on) => pairConfig(kind, on ? 0.1 : 0), STEPS, 'adapter_model.safetensors', 1e-4);
    }, 300_000);

  it('ppo: 2 ranks = 1 rank with lora.dropout 0.1 over two rollouts (losses within 1e-6, the same adapter)', async () => {
    await expectTwoRanksMatchOne('ppo', 'ppo', (on) => ppoConfig(on ? 0.1 : 0), 6, 'adapter_model.safetensors', 1e-4);
  }, 300_000);

  it('pretrain of an SMoE with routerJitter 0.1: 2 ranks = 1 rank (losses within 1e-6, the same weights)', async () => {
    const cfgFile = (jitter: number): string => {
      const f = path.join(root, `moe-${jitter}.json`);
      fs.writeFileSync(f, JSON.stringify({
        name: 'moe', model: { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 64, maxSeqLen: 64, numExperts: 4, topK: 2, routerJitter: jitter }, tokenizer: 'byte',
        data: { sample: true, weights: { patent: 0.6, law: 0.25, qa: 0.15 }, valFraction: 0.05 },
        seqLen: 64, batchSize: 2, gradAccum: 2, steps: 4, optimizer: { lr: 0.01 }, schedule: { kind: 'constant' },
        evalEvery: 0, checkpointEvery: 4, keepCheckpoints: 3, seed: 3, threads: 1,
      }));
      return f;
    };
    await expectTwoRanksMatchOne('pretrain', 'moe', (on) => cfgFile(on ? 0.1 : 0), 4, 'model.safetensors', 1e-5);
  }, 300_000);
});
