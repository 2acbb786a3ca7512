// examples/tiny-moe.json: it validates into the intended sparse model (tiny-stage1's shape, its
// MLP split into 4 experts, top-2: the same active feed-forward size), and a few of its steps run
// through the pretrain stage on real patent text (../shared/data, or PATENTGPT_DATA; the
// built-in sample corpus when that is absent), with expert load in metrics.jsonl.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isMoE, parameterCount } from '../../src/models/config.js';
import { loadStageConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { pretrain, resolveModelConfig, stageModelConfig } from '../../src/train/pretrain.js';
import { stageOfKind } from '../helpers.js';

const ex = (f: string): string => new URL(`../../examples/${f}`, import.meta.url).pathname;
const dataRoot = process.env.PATENTGPT_DATA ?? new URL('../../../shared/data', import.meta.url).pathname;
const abstracts = path.join(dataRoot, 'patentsview-abstracts');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-example-moe-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('examples/tiny-moe.json', () => {
  it('validates into tiny-stage1\'s model with its MLP as 4 experts, top-2', async () => {
    const cfg = await loadStageConfig(ex('tiny-moe.json'));
    const dense = await loadStageConfig(ex('tiny-stage1.json'));
    const m = stageModelConfig(await resolveModelConfig(cfg.model, 'tiny-moe.json'), cfg, 'tiny-moe.json');
    const d = stageModelConfig(await resolveModelConfig(dense.model, 'tiny-stage1.json'), dense, 'tiny-stage1.json');
    expect(isMoE(m)).toBe(true);
    expect([m.numExperts, m.topK, m.routerAuxLossCoef, m.routerZLossCoef]).toEqual([4, 2, 0.02, 0.001]);
    expect({ ...m, ffnDim: m.topK * m.ffnDim }).toMatchObject({ dim: d.dim, nLayers: d.nLayers, nHeads: d.nHeads, nKvHeads: d.nKvHeads, ffnDim: d.ffnDim, maxSeqLen: d.maxSeqLen });
    const pc = parameterCount(m);
    expect(pc.total).toBeGreaterThan(parameterCount(d).total);
    expect(pc.active).toBeLessThan(pc.total);
    expect([cfg.seqLen, cfg.tokenizer]).toEqual([256, 'byte']);
  });

  it(`runs through the pretrain stage (3 steps) on ${fs.existsSync(abstracts) ? abstracts : 'the built-in sample (real data absent)'}`, async () => {
    const runDir = path.join(root, 'run');
    const cfg = await loadStageConfig(ex('tiny-moe.json'), { steps: 3, runDir, evalEvery: 3, evalBatches: 1, checkpointEvery: 3 });
    const res = await pretrain(stageOfKind(cfg, 'pretrain'), { progress: null, ...(fs.existsSync(abstracts) ? { dataPaths: [abstracts] } : {}) });
    expect(res.step).toBe(3);
    const last = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => typeof r.loss === 'number').at(-1)!;
    const load = last.expert_load_max_over_mean as Record<string, number>;
    expect(Object.keys(load).sort()).toEqual(['0', '1', '2', '3']);
    expect(fs.readFileSync(path.join(runDir, 'report.svg'), 'utf8')).toContain('Expert load');
  }, 120_000);
});
