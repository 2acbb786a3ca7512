// examples/tiny-reward.json: it validates into tiny-sft's model (the decoder a reward head goes on)
// with its data on human vs machine-written patent abstracts, and a few of its steps run through
// the reward stage on that data (../shared/data, or PATENTGPT_DATA; skipped with a message when
// absent) from a causal LM folder standing in for runs/tiny-sft: held-out accuracy and the pair
// metrics in metrics.jsonl, and a reward folder as the checkpoint.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, savePretrained } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { loadStageConfig, type RewardConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { resolveModelConfig, stageModelConfig } from '../../src/train/pretrain.js';
import { reward } from '../../src/train/stages/reward.js';

const ex = (f: string): string => new URL(`../../examples/${f}`, import.meta.url).pathname;
const dataRoot = process.env.PATENTGPT_DATA ?? new URL('../../../shared/data', import.meta.url).pathname;
const genpairs = path.join(dataRoot, 'us-abstract-claim-genpairs');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-example-reward-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('examples/tiny-reward.json', () => {
  it('validates into tiny-sft\'s model, starting from runs/tiny-sft, on the genpairs CSVs', async () => {
    const cfg = (await loadStageConfig(ex('tiny-reward.json'))) as RewardConfig;
    const sft = await loadStageConfig(ex('tiny-sft.json'));
    expect(cfg.kind).toBe('reward');
    const m = stageModelConfig(await resolveModelConfig(cfg.model, 'tiny-reward.json'), cfg, 'tiny-reward.json');
    const s = stageModelConfig(await resolveModelConfig(sft.model, 'tiny-sft.json'), sft, 'tiny-sft.json');
    expect(m).toEqual(s);
    expect(cfg.init).toBe(path.resolve('runs/tiny-sft'));
    expect(cfg.data.sources.map((x) => path.basename(x.path))).toEqual(['Llama2_A61B_1000.csv', 'Gemini_A61B_500.csv']);
    expect(cfg.data.sources.every((x) => x.path.startsWith(path.resolve(ex('.'), '../../shared/data')))).toBe(true);
    expect(cfg.reward).toEqual({ margin: 0, centerRewardsCoefficient: 0.01, scoreInitStd: 0.02 });
  });

  it.skipIf(!fs.existsSync(genpairs))('runs through the reward stage (3 steps) on the abstracts from a causal LM folder', async () => {
    const cfg0 = (await loadStageConfig(ex('tiny-reward.json'))) as RewardConfig;
    const init = path.join(root, 'init');
    const lm = new LlamaForCausalLM(stageModelConfig(await resolveModelConfig(cfg0.model, 'x'), cfg0, 'x'), { seed: 3 });
    await savePretrained(lm, init, { tokenizer: new ByteTokenizer() });
    lm.dispose();
    const runDir = path.join(root, 'run');
    const cfg = (await loadStageConfig(ex('tiny-reward.json'), { steps: 3, runDir, init, evalEvery: 3, evalBatches: 2, checkpointEvery: 3, threads: 1 })) as RewardConfig;
    const r = await reward(cfg, { progress: null });
    expect(r).toMatchObject({ status: 'completed', step: 3, initFrom: 'causal-lm' });
    expect(r.data.train + r.data.val).toBeGreaterThan(1400); // 1000 + 495 pairs, a few skipped at most
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl')) as Record<string, unknown>[];
    expect(typeof recs.find((x) => x.loss !== undefined)!.accuracy).toBe('number');
    expect(typeof recs.find((x) => x.valLoss !== undefined)!['val.accuracy']).toBe('number');
    const folder = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoints', 'step-3', 'config.json'), 'utf8')) as { architectures: string[] };
    expect(folder.architectures).toEqual(['LlamaForSequenceClassification']);
  }, 120_000);
});
