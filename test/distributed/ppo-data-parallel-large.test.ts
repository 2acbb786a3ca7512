// PPO on 2 MPI ranks (launch --global-batch) = 1 rank, bit for bit, for a rollout larger than one
// engine step: 32 prompts of over 1024 tokens in all against the step budget of 512, so one rank
// prefills them over 3 steps, with decodes in between, and each of 2 ranks its 16 over 2. The
// engine cuts no prompt at a budget boundary and pads every step past the GEMV row limit
// (ppo.batchInvariant), so every response's log-probs and values are the same bits on 1 and 2 ranks:
// every logged number (timings aside) is equal, not merely close, and so are the final weights.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha } from '../train/child-run.js';
import { writeInit } from '../train/sft-fixtures.js';
import { mpiMissing, ppoRuns } from './mpi-helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ppo-dp-large-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const init = path.join(root, 'init');
const STEPS = 4; // 32 prompts, 4 a micro-batch, 1 epoch: 8 micro-batches, 4 steps of 2 = one rollout
const PROMPTS = 32;
const BUDGET = 512; // the rollout engine's maxNumBatchedTokens: max(512, seqLen)

const { config, one, two, file, steps, TIMING } = ppoRuns(root, STEPS);
const texts: string[] = [];

beforeAll(async () => {
  if (mpiMissing !== null) return;
  await writeInit(init, 11);
  const things = ['hinge', 'valve', 'battery', 'gear', 'sensor', 'lens', 'pump', 'bracket'];
  for (let i = 0; i < PROMPTS; i++) texts.push(`Claim ${i}: a ${things[i % 8]} held in a housing by a clip`);
  const prompts = path.join(root, 'prompts.jsonl');
  fs.writeFileSync(prompts, texts.map((t) => JSON.stringify({ prompt: t })).join('\n') + '\n');
  fs.writeFileSync(config, JSON.stringify({
    kind: 'ppo', name: 'ppo-dp-large', model: init, init, tokenizer: 'byte', prompts: { path: prompts }, reward: { function: 'claim-format' },
    seqLen: 96, batchSize: 4, gradAccum: 2, steps: STEPS, optimizer: { lr: 2e-3, weightDecay: 0 }, schedule: { kind: 'constant' },
    evalEvery: 0, checkpointEvery: STEPS, seed: 3, threads: 1,
    ppo: { rolloutBatch: PROMPTS, epochs: 1, maxNewTokens: 16, temperature: 1, klCoef: 0.005, batchInvariant: true },
  }));
});

describe.skipIf(mpiMissing !== null)('PPO on 2 MPI ranks, a rollout over several engine steps', () => {
  it('every logged number and the final weights equal 1 rank\'s exactly', async () => {
    // byte tokens: each prompt is at least its text's bytes (the chat template adds more)
    expect(texts.reduce((a, t) => a + Buffer.byteLength(t), 0)).toBeGreaterThan(2 * BUDGET);
    const a = path.join(root, 'one'), b = path.join(root, 'two');
    const [ra, rb] = await Promise.all([one(a), two(b)]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr + rb.stdout).toBe(0);
    const want = steps(a), got = steps(b);
    expect(want).toHaveLength(STEPS);
    expect(got.map((m) => m.step)).toEqual(want.map((m) => m.step));
    want.forEach((w, i) => {
      const keys = Object.keys(w).filter((k) => typeof w[k] === 'number' && !TIMING.has(k));
      expect(keys.length).toBeGreaterThan(15);
      for (const k of keys) expect(got[i]![k], `step ${w.step} ${k}`).toBe(w[k]);
    });
    const names = ['model.safetensors', 'value_head.safetensors'];
    expect(names.map((n) => sha(file(b, n)))).toEqual(names.map((n) => sha(file(a, n))));
  }, 240_000);
});
