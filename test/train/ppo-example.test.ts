// examples/tiny-ppo.json: it validates into the tiny demo's model with the claim-format reward and
// its committed prompts, and a few steps of it run through the ppo stage (from a model folder of
// the example's shape standing in for runs/tiny-sft) with every PPO metric in metrics.jsonl.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, savePretrained, validateConfig } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { loadStageConfig, type PpoConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { ppo } from '../../src/train/stages/ppo.js';

const repo = new URL('../../', import.meta.url).pathname;
const example = path.join(repo, 'examples/tiny-ppo.json');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-ppo-example-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('examples/tiny-ppo.json', () => {
  it('validates, and 4 steps (one rollout of 32 prompts, 2 epochs of 2 minibatches) run with the PPO metrics', async () => {
    const cfg = (await loadStageConfig(example)) as PpoConfig;
    expect(cfg.kind).toBe('ppo');
    expect(cfg.init).toBe(path.resolve('runs/tiny-sft'));
    expect(cfg.reward).toEqual({ function: 'claim-format' });
    expect(cfg.prompts.path).toBe(path.join(repo, 'examples/tiny-ppo-prompts.jsonl'));
    const init = path.join(root, 'init');
    const m = new LlamaForCausalLM(validateConfig(cfg.model), { seed: 1 });
    await savePretrained(m, init, { tokenizer: new ByteTokenizer() });
    m.dispose();
    const short = (await loadStageConfig(example, { init, steps: 4, runDir: path.join(root, 'run'), threads: 1 })) as PpoConfig;
    const r = await ppo(short, { progress: null });
    expect(r).toMatchObject({ status: 'completed', step: 4, rollouts: 1, prompts: { used: 128, skipped: 0 } });
    const ms = readMetrics(path.join(root, 'run', 'metrics.jsonl')).filter((x) => typeof x.loss === 'number');
    expect(ms).toHaveLength(4);
    for (const k of ['reward', 'kl', 'klCoef', 'entropy', 'clipFraction', 'valueLoss', 'approxKl', 'responseLength', 'eosRate'])
      for (const x of ms) expect(Number.isFinite(x[k] as number), k).toBe(true);
    expect(Math.abs(ms[0]!.kl as number)).toBeLessThan(1e-5); // the policy starts as the reference (the engine's old log-probs round apart from the packed forward's)
    expect(ms[0]!.responseLength as number).toBeLessThanOrEqual(64);
  }, 120_000);
});
