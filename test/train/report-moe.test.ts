// report.svg of an SMoE run has an expert-load panel (max / mean tokens per expert, per layer,
// from the metric the layer writes to metrics.jsonl); a dense run's has none.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeShards } from '../../src/data/shards.js';
import { validateStageConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { renderReportSvg } from '../../src/train/plot.js';
import { pretrain } from '../../src/train/pretrain.js';
import { stageOfKind } from '../helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-moe-report-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const PANEL = 'Expert load (max / mean tokens per expert';

async function run(name: string, moe: boolean): Promise<{ svg: string; runDir: string }> {
  const shards = path.join(root, 'shards');
  if (!fs.existsSync(shards)) {
    const docs = Array.from({ length: 16 }, (_, d) => ({ ids: Array.from({ length: 40 }, (_, i) => (d * 7 + i * 3) % 50 + 3), category: 'patent' }));
    await writeShards(shards, docs, { vocabSize: 259 });
  }
  const cfg = validateStageConfig({
    name, runDir: path.join(root, name),
    model: { vocabSize: 259, dim: 32, nLayers: 2, nHeads: 2, ffnDim: 32, maxSeqLen: 64, ...(moe ? { numExperts: 4, topK: 2 } : {}) },
    data: { manifests: [shards] }, seqLen: 32, batchSize: 2, steps: 4, optimizer: { lr: 0.01 }, logEvery: 1,
  });
  const res = await pretrain(stageOfKind(cfg, 'pretrain'), { progress: null });
  return { svg: fs.readFileSync(path.join(res.runDir, 'report.svg'), 'utf8'), runDir: res.runDir };
}

describe('report.svg and expert load', () => {
  it('an SMoE run\'s report has the expert-load panel, one line per layer; a dense run\'s does not', async () => {
    const moe = await run('moe', true);
    expect(moe.svg).toContain(PANEL);
    expect(moe.svg).toContain('layer 0');
    expect(moe.svg).toContain('layer 1');
    expect(moe.svg).not.toMatch(/NaN|undefined/);
    expect(moe.svg).toMatch(/height="790"/); // three panels
    // the lines are the metric the layers wrote
    const loads = readMetrics(path.join(moe.runDir, 'metrics.jsonl')).map((r) => r.expert_load_max_over_mean).filter((v) => typeof v === 'object');
    expect(loads.length).toBeGreaterThanOrEqual(4);
    const dense = await run('dense', false);
    expect(dense.svg).not.toContain(PANEL);
    expect(dense.svg).not.toContain('layer 0');
    // the same loss and lr lines, plus one per layer
    expect(moe.svg.match(/<path /g)!.length).toBe(dense.svg.match(/<path /g)!.length + 2);
  }, 120_000);

  it('many layers are drawn as the max and the mean over layers', () => {
    const records = Array.from({ length: 5 }, (_, s) => ({
      step: s + 1, loss: 3 - s * 0.1,
      expert_load_max_over_mean: Object.fromEntries(Array.from({ length: 12 }, (_, l) => [String(l), 1 + l * 0.1 + s * 0.01])),
    }));
    const svg = renderReportSvg(records);
    expect(svg).toContain(PANEL);
    expect(svg).toContain('max over 12 layers');
    expect(svg).toContain('mean over layers');
    expect(svg).not.toContain('layer 11');
    expect(svg).not.toMatch(/NaN|undefined|Infinity/);
  });
});
