// ppo.stopAtEos false, TRL's PPOTrainer without a stop_token: every response runs maxNewTokens
// tokens and EOS is an ordinary token (the bench uses it so that both sides do the same work).
// With the default the same seeds end some responses at EOS (shorter on average, eosRate > 0).
// missingEosPenalty has no meaning then and is refused.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateStageConfig, type PpoConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { ppo } from '../../src/train/stages/ppo.js';
import { writeInit } from './sft-fixtures.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ppo-eos-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const initDir = path.join(root, 'init');
const promptFile = path.join(root, 'prompts.jsonl');
const L = 24;

beforeAll(async () => {
  await writeInit(initDir, 5);
  fs.writeFileSync(promptFile, Array.from({ length: 32 }, (_, i) => JSON.stringify({ prompt: `Claim ${i}.` })).join('\n') + '\n');
});

function config(name: string, ppoExtra: Record<string, unknown> = {}): PpoConfig {
  return validateStageConfig({
    kind: 'ppo', name, runDir: path.join(root, name), model: initDir, tokenizer: 'byte', prompts: { path: promptFile }, reward: { function: 'claim-format' },
    seqLen: 80, batchSize: 32, steps: 3, optimizer: { lr: 1e-3, weightDecay: 0 }, schedule: { kind: 'constant' }, evalEvery: 0, checkpointEvery: 0,
    seed: 2, threads: 1, ppo: { rolloutBatch: 32, epochs: 1, maxNewTokens: L, temperature: 1.5, klCoef: 0.01, ...ppoExtra },
  }) as PpoConfig;
}

async function lengths(cfg: PpoConfig): Promise<{ len: number; eos: number }[]> {
  const r = await ppo(cfg, { progress: null });
  expect(r.status).toBe('completed');
  return readMetrics(path.join(cfg.runDir, 'metrics.jsonl')).filter((m) => typeof m.loss === 'number').map((m) => ({ len: m.responseLength as number, eos: m.eosRate as number }));
}

describe('ppo.stopAtEos', () => {
  it('false: every response is maxNewTokens long; by default some end at EOS', async () => {
    expect(await lengths(config('full', { stopAtEos: false }))).toEqual([0, 1, 2].map(() => ({ len: L, eos: 0 })));
    const byDefault = await lengths(config('default'));
    expect(byDefault.some((m) => m.len < L && m.eos > 0), JSON.stringify(byDefault)).toBe(true);
  }, 120_000);

  it('refuses missingEosPenalty beside stopAtEos false, and a non-boolean', () => {
    expect(() => config('bad', { stopAtEos: false, missingEosPenalty: 1 })).toThrow(/ppo\.missingEosPenalty/);
    expect(() => config('bad2', { stopAtEos: 'no' })).toThrow(/ppo\.stopAtEos/);
  });
});

// ppo.batchInvariant (its effect, 2 ranks bit for bit: test/distributed/ppo-data-parallel-large.test.ts)
describe('ppo.batchInvariant', () => {
  it('is kept only when true (the default leaves the config hash as it was) and refuses a non-boolean', () => {
    expect(config('bi', { batchInvariant: true }).ppo.batchInvariant).toBe(true);
    expect('batchInvariant' in config('bi-off', { batchInvariant: false }).ppo).toBe(false);
    expect(() => config('bi-bad', { batchInvariant: 'yes' })).toThrow(/ppo\.batchInvariant/);
  });
});
