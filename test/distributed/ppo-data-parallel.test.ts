// PPO on 2 MPI ranks (launch --global-batch): each rank samples, scores and references half of each
// rollout's prompts (each response with its own seed f(seed, rollout, global index)), the scored rows
// are exchanged so every rank runs the rollout math (KL, GAE, whitening) over the whole rollout, the
// step's micro-batches are dealt round-robin and the gradients averaged: the per-step losses and
// metrics of 1 rank with the same global rollout batch (within 1e-6; bit for bit here) and its final
// weights and value head. A checkpoint taken mid-rollout on 2 ranks resumes on 1, and one of 1 rank
// on 2, with the uninterrupted run's losses and weights.
// A rollout over several engine steps: ppo-data-parallel-large.test.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exchangeRollout, gatherValues, rolloutShare, type SampledRow } from '../../src/train/ppo/exchange.js';
import type { MetricRecord } from '../../src/train/metrics.js';
import { sha } from '../train/child-run.js';
import { writeInit } from '../train/sft-fixtures.js';
import { mpiMissing, ppoRuns, cutBackTo } from './mpi-helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ppo-dp-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const init = path.join(root, 'init');
const STEPS = 6; // 16 prompts, 4 a micro-batch, 2 epochs: 8 micro-batches, 4 steps of 2 a rollout

const { config, one, two, file, steps, TIMING } = ppoRuns(root, STEPS);

function expectSameSteps(got: MetricRecord[], want: MetricRecord[], what: string): void {
  expect(got.map((m) => m.step), what).toEqual(want.map((m) => m.step));
  want.forEach((w, i) => {
    const keys = Object.keys(w).filter((k) => typeof w[k] === 'number' && !TIMING.has(k));
    expect(keys.length).toBeGreaterThan(15);
    for (const k of keys) expect(Math.abs((got[i]![k] as number) - (w[k] as number)), `${what}: step ${w.step} ${k}: ${got[i]![k]} vs ${w[k]}`).toBeLessThanOrEqual(1e-6);
  });
}

beforeAll(async () => {
  if (mpiMissing !== null) return;
  await writeInit(init, 11);
  const things = ['hinge', 'valve', 'battery', 'gear', 'sensor', 'lens', 'pump', 'bracket'];
  const prompts = path.join(root, 'prompts.jsonl');
  fs.writeFileSync(prompts, Array.from({ length: 24 }, (_, i) => JSON.stringify({ prompt: `Claim: ${things[i % 8]} ${i}` })).join('\n') + '\n');
  fs.writeFileSync(config, JSON.stringify({
    kind: 'ppo', name: 'ppo-dp', model: init, init, tokenizer: 'byte', prompts: { path: prompts }, reward: { function: 'claim-format' },
    seqLen: 96, batchSize: 4, gradAccum: 2, steps: STEPS, optimizer: { lr: 2e-3, weightDecay: 0 }, schedule: { kind: 'constant' },
    evalEvery: 0, checkpointEvery: 2, keepCheckpoints: 5, seed: 3, threads: 1,
    ppo: { rolloutBatch: 16, epochs: 2, maxNewTokens: 16, temperature: 1, klCoef: 0.005, adaptiveKl: { target: 1, horizon: 50 } },
  }));
});

describe('PPO rollout exchange (host side)', () => {
  it('the ranks\' shares are contiguous, in rank order, and cover the rollout once', () => {
    for (const [rows, W] of [[16, 2], [10, 3], [2, 4]] as const) {
      const shares = Array.from({ length: W }, (_, r) => rolloutShare(rows, r, W));
      expect(shares.flatMap(({ lo, hi }) => Array.from({ length: hi - lo }, (_, i) => lo + i))).toEqual(Array.from({ length: rows }, (_, i) => i));
    }
  });

  it('every rank gets every rank\'s rows in global order, values exactly (float64 through a sum)', () => {
    const row = (k: number, L: number): SampledRow => ({
      response: Int32Array.from({ length: L }, (_, t) => 3 + k + t), hasEos: k % 2, score: Math.PI * k, generated: L + 1,
      logprobs: Array.from({ length: L }, (_, t) => -Math.E / (t + k + 1)), values: Array.from({ length: L }, (_, t) => 0.1 * t - k), refLogprobs: Float32Array.from({ length: L }, (_, t) => -1 / 3 - t),
    });
    const mine = [[row(0, 2), row(1, 3)], [row(2, 1)], []];
    const W = mine.length;
    // a float64 sum over W ranks, simulated: each rank's i-th call is answered with the elementwise
    // sum of every rank's i-th call (found by running the ranks once per call, in order)
    const run = (r: number, answers: number[][], seen: number[][]): ReturnType<typeof exchangeRollout> => {
      let i = 0;
      return exchangeRollout({ sum: (v) => (seen.push(v), answers[i++] ?? v) }, mine[r]!, 0.5 + r, r, W);
    };
    const answers: number[][] = [];
    for (let call = 0; call < 2; call++) {
      const args = mine.map((_, r) => {
        const seen: number[][] = [];
        run(r, answers, seen);
        return seen[call]!;
      });
      answers.push(args.reduce((a, b) => a.map((x, j) => x + b[j]!)));
    }
    const flat = (w: SampledRow) => [Array.from(w.response), w.hasEos, w.score, w.generated, Array.from(w.logprobs), Array.from(w.values), Array.from(w.refLogprobs)];
    for (let r = 0; r < W; r++) {
      const got = run(r, answers, []);
      expect(got.secs).toBe(2.5); // the slowest rank's sampling time
      expect(got.rows.map(flat)).toEqual(mine.flat().map(flat));
    }
    expect(gatherValues({ sum: (v) => v }, [1, 2], 0, 1)).toEqual([[1, 2]]);
  });
});

describe.skipIf(mpiMissing !== null)('PPO on 2 MPI ranks = 1 rank with the same global rollout batch', () => {
  it('same per-step losses and metrics, same weights and value head; resumes 2 -> 1 and 1 -> 2 mid-rollout', async () => {
    const a = path.join(root, 'one'); // 1 rank, then cut back and resumed on 2
    const b = path.join(root, 'two'); // 2 ranks, then cut back and resumed on 1
    const [ra, rb] = await Promise.all([one(a), two(b)]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr + rb.stdout).toBe(0);
    const ref = steps(a);
    expect(ref).toHaveLength(STEPS);
    expect(new Set(ref.map((m) => m.klCoef)).size).toBeGreaterThan(1); // the adaptive coefficient moved
    expectSameSteps(steps(b), ref, '2 ranks');
    const finals = ['model.safetensors', 'value_head.safetensors'].map((n) => sha(file(a, n)));
    expect(['model.safetensors', 'value_head.safetensors'].map((n) => sha(file(b, n)))).toEqual(finals);
    expect(fs.readdirSync(path.join(b, 'checkpoints')).sort()).toEqual(['step-2', 'step-4', 'step-6']); // rank 0 alone writes

    cutBackTo(a, 2); // step 2 of 4 in the first rollout: the rollout buffer is in the checkpoint
    cutBackTo(b, 2);
    const saved = (run: string): number => fs.statSync(path.join(run, 'checkpoints', 'step-2', 'state.json')).mtimeMs;
    const before = [saved(a), saved(b)];
    const [ra2, rb2] = await Promise.all([two(a), one(b)]);
    expect(ra2.code, ra2.stderr + ra2.stdout).toBe(0);
    expect(rb2.code, rb2.stderr).toBe(0);
    expect([saved(a), saved(b)], 'resumed from step 2, not started over').toEqual(before);
    for (const run of [a, b]) {
      expectSameSteps(steps(run), ref, `resumed ${run}`);
      expect(['model.safetensors', 'value_head.safetensors'].map((n) => sha(file(run, n))), run).toEqual(finals);
    }
  }, 240_000);
});
