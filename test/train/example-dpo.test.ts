// examples/tiny-dpo.json: it validates into tiny-sft's model (same shape, init the SFT run) with
// the DPO objective, and a few of its steps run through the dpo stage on its real pairs
// (../shared/data; skipped with a message when absent), from a model folder of that shape
// standing in for the SFT run, with TRL's reward metrics in metrics.jsonl.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, savePretrained } from '../../src/models/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { loadStageConfig, type DpoConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { resolveModelConfig } from '../../src/train/stages/common.js';
import { dpo } from '../../src/train/stages/dpo.js';

const ex = (f: string): string => new URL(`../../examples/${f}`, import.meta.url).pathname;
const dataRoot = process.env.PATENTGPT_DATA ?? new URL('../../../shared/data', import.meta.url).pathname;
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-example-dpo-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('examples/tiny-dpo.json', () => {
  it('validates: tiny-sft\'s model and tokenizer, init the SFT run, sigmoid DPO with a precomputed reference', async () => {
    const cfg = (await loadStageConfig(ex('tiny-dpo.json'))) as DpoConfig;
    const sftCfg = await loadStageConfig(ex('tiny-sft.json'));
    expect(cfg.kind).toBe('dpo');
    expect(cfg.model).toEqual(sftCfg.model);
    expect([cfg.tokenizer, cfg.chatTemplate, cfg.seqLen]).toEqual([sftCfg.tokenizer, 'llama2', 256]);
    expect(cfg.init).toBe(path.resolve('runs/tiny-sft'));
    expect(cfg.dpo).toEqual({ beta: 0.1, loss: 'sigmoid', labelSmoothing: 0, reference: 'precomputed' });
    expect(cfg.data.sources.map((s) => path.relative(dataRoot, s.path))).toEqual([
      path.join('preference-demo', 'hh-rlhf-harmless-base', 'test.jsonl.gz'), path.join('us-abstract-claim-genpairs', 'Llama2_A61B_1000.csv'),
    ]);
  });

  it.skipIf(!fs.existsSync(path.join(dataRoot, 'us-abstract-claim-genpairs')))('runs through the dpo stage (3 steps, 40 pairs a source) from a model of its shape', async () => {
    const cfg = (await loadStageConfig(ex('tiny-dpo.json'), { steps: 3, evalEvery: 3, evalBatches: 2, checkpointEvery: 3 })) as DpoConfig;
    const initDir = path.join(root, 'sft');
    const m = new LlamaForCausalLM(await resolveModelConfig(cfg.model), { seed: 1 });
    await savePretrained(m, initDir, { tokenizer: new ByteTokenizer() });
    m.dispose();
    cfg.init = initDir;
    cfg.runDir = path.join(root, 'run');
    for (const s of cfg.data.sources) s.limit = 40;
    const r = await dpo(cfg, { progress: null });
    expect(r.status).toBe('completed');
    expect(r.data.train).toBeGreaterThan(30);
    const recs = readMetrics(path.join(cfg.runDir, 'metrics.jsonl')) as Record<string, number>[];
    expect(recs.filter((x) => x.loss !== undefined)).toHaveLength(3);
    for (const k of ['rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies', 'logps/chosen', 'logps/rejected']) expect(typeof recs[0]![k]).toBe('number');
    expect(recs.some((x) => typeof x['val.rewards/margins'] === 'number')).toBe(true);
  }, 120_000);
});
