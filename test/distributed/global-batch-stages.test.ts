// launch --global-batch for the fine-tuning stages (SFT, reward, DPO) over 2 real MPI ranks: the
// config's batchSize x gradAccum is the global batch and the ranks split gradAccum, so 2 ranks give
// the per-step losses (within 1e-6) and the final weights (bit for bit: gradAccum 2 on one rank adds
// two halves, 2 ranks halve one sum) of 1 rank with the same config; SFT's token weighting counts
// the whole step's assistant tokens. A checkpoint saved on 2 ranks resumes on 1 and one saved on 1
// resumes on 2 (the stream position is restated for the new world) with the uninterrupted run's
// losses and weights. Every logged number but the timings is 1 rank's too: the tokens count (the
// ranks' batches differ in length) and the task's metrics (reward accuracy and margin, DPO's
// rewards/* and logps/*), which the loop sums over the ranks' micro-batches.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMetrics, type MetricRecord } from '../../src/train/metrics.js';
import { sha, trainLosses } from '../train/child-run.js';
import { writeAlpaca, writeClaimPairs, writeInit } from '../train/sft-fixtures.js';
import { cli, mpiMissing, cutBackTo, expectStepsClose } from './mpi-helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-gb-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const init = path.join(root, 'init');

type Kind = 'sft' | 'reward' | 'dpo';
const STEPS = 4;

function config(kind: Kind): string {
  const file = path.join(root, `${kind}.json`);
  const common = {
    kind, name: kind, model: init, init, tokenizer: 'byte', batchSize: 2, gradAccum: 2, steps: STEPS, schedule: { kind: 'cosine', warmupSteps: 1 },
    evalEvery: 0, checkpointEvery: 2, keepCheckpoints: 3, seed: 4, threads: 1,
  };
  const pairs = path.join(root, 'pairs.jsonl');
  fs.writeFileSync(file, JSON.stringify(kind === 'sft'
    ? { ...common, data: { sources: [path.join(root, 'reverse.jsonl')], valFraction: 0 }, seqLen: 128, optimizer: { lr: 0.003 } }
    : {
      ...common, data: { sources: [pairs], shuffle: true, valFraction: 0 }, seqLen: 96, optimizer: { lr: 0.002, weightDecay: 0 },
      ...(kind === 'dpo' ? { lora: { r: 4, alpha: 8, targetModules: 'all-linear' }, dpo: { beta: 0.5 } } : {}),
    }));
  return file;
}

const one = (kind: Kind, run: string) => cli([kind, '--config', config(kind), '--run-dir', run, '--quiet']);
const two = (kind: Kind, run: string) => cli(['launch', '--nproc', '2', '--global-batch', '--', kind, '--config', config(kind), '--run-dir', run, '--quiet']);
const weights = (kind: Kind, run: string): string =>
  sha(path.join(run, 'checkpoints', `step-${STEPS}`, kind === 'dpo' ? 'adapter_model.safetensors' : 'model.safetensors'));

const TIMING = new Set(['step', 'tokensPerSec', 'mfu', 'elapsedSec']);
/** The metrics each stage must log the same as 1 rank (beyond loss, lr, gradNorm). */
const MUST: Record<Kind, string[]> = {
  sft: ['tokens'],
  reward: ['tokens', 'accuracy', 'margin', 'rewardChosen', 'rewardRejected'],
  dpo: ['tokens', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies', 'logps/chosen', 'logps/rejected'],
};

const steps = (run: string): MetricRecord[] => readMetrics(path.join(run, 'metrics.jsonl')).filter((m) => typeof m.loss === 'number');

/** Every numeric field of every step record of `run` equals the reference's within 1e-6 (timings aside). */
function expectSameMetrics(kind: Kind, run: string, want: MetricRecord[], what: string): void {
  const got = steps(run);
  expect(want).toHaveLength(STEPS);
  expect(got.map((m) => m.step), what).toEqual(want.map((m) => m.step));
  want.forEach((w, i) => {
    const keys = Object.keys(w).filter((k) => typeof w[k] === 'number' && !TIMING.has(k));
    for (const k of MUST[kind]) expect(keys, `${what}: step ${w.step} logs ${k}`).toContain(k);
    for (const k of keys) expect(Math.abs((got[i]![k] as number) - (w[k] as number)), `${what}: step ${w.step} ${k}: ${got[i]![k]} vs ${w[k]}`).toBeLessThanOrEqual(1e-6);
  });
}

beforeAll(async () => {
  if (mpiMissing !== null) return;
  writeAlpaca(path.join(root, 'reverse.jsonl'), 96);
  writeClaimPairs(path.join(root, 'pairs.jsonl'), 24);
  await writeInit(init);
});

describe.skipIf(mpiMissing !== null)('launch --global-batch: SFT, reward and DPO on 2 ranks = 1 rank, resumable across world sizes', () => {
  for (const kind of ['sft', 'reward', 'dpo'] as const)
    it(`${kind}: same losses and weights as 1 rank; 2 -> 1 and 1 -> 2 resumes continue the uninterrupted run`, async () => {
      const a = path.join(root, `${kind}-1`); // 1 rank, then cut back and resumed on 2
      const b = path.join(root, `${kind}-2`); // 2 ranks, then cut back and resumed on 1
      const [ra, rb] = await Promise.all([one(kind, a), two(kind, b)]);
      expect(ra.code, ra.stderr).toBe(0);
      expect(rb.code, rb.stderr + rb.stdout).toBe(0);
      const ref = trainLosses(a);
      expect(ref).toHaveLength(STEPS);
      expectStepsClose(trainLosses(b), ref, '2 ranks');
      const refMetrics = steps(a);
      expectSameMetrics(kind, b, refMetrics, '2 ranks');
      const final = weights(kind, a);
      expect(weights(kind, b)).toBe(final);

      cutBackTo(a, 2);
      cutBackTo(b, 2);
      const saved = (run: string): number => fs.statSync(path.join(run, 'checkpoints', 'step-2', 'state.json')).mtimeMs;
      const before = [saved(a), saved(b)];
      const [ra2, rb2] = await Promise.all([two(kind, a), one(kind, b)]);
      expect(ra2.code, ra2.stderr + ra2.stdout).toBe(0);
      expect(rb2.code, rb2.stderr).toBe(0);
      expect([saved(a), saved(b)], 'resumed from step 2, not started over').toEqual(before);
      for (const run of [a, b]) {
        expectStepsClose(trainLosses(run), ref, `resumed ${run}`);
        expectSameMetrics(kind, run, refMetrics, `resumed ${run}`);
        expect(weights(kind, run), run).toBe(final);
      }
      // the steps after the resume on 1 rank are the 1-rank run's, bit for bit (from the same weights)
      expect(trainLosses(b).slice(2)).toEqual(ref.slice(2));
    }, 240_000);
});
