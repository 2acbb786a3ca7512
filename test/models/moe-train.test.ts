// An SMoE config through the unchanged pretraining stage: it trains, the loss falls, and the
// per-layer router metrics (expert load, load-balancing loss) reach metrics.jsonl.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeShards } from '../../src/data/shards.js';
import { validateStageConfig } from '../../src/train/config.js';
import { pretrain } from '../../src/train/pretrain.js';
import { stageOfKind } from '../helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-moe-train-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('SMoE pretraining', () => {
  it('a tiny MoE trains through the pretrain stage, its router metrics in metrics.jsonl', async () => {
    const shards = path.join(root, 'shards');
    const docs = Array.from({ length: 24 }, (_, d) => ({ ids: Array.from({ length: 40 }, (_, i) => (d * 7 + i * 3) % 50 + 3), category: 'patent' }));
    await writeShards(shards, docs, { vocabSize: 259 });
    const cfg = validateStageConfig({
      name: 'moe', runDir: path.join(root, 'run'),
      model: { vocabSize: 259, dim: 32, nLayers: 2, nHeads: 2, ffnDim: 32, maxSeqLen: 64, numExperts: 4, topK: 2, routerZLossCoef: 0.001 },
      data: { manifests: [shards] }, seqLen: 32, batchSize: 2, steps: 12, optimizer: { lr: 0.01 }, logEvery: 1,
    });
    const res = await pretrain(stageOfKind(cfg, 'pretrain'), { progress: null });
    expect(res.model.numExperts).toBe(4);
    const lines = fs.readFileSync(path.join(res.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const train = lines.filter((l) => typeof l.loss === 'number');
    expect(train.length).toBeGreaterThanOrEqual(10);
    const first = train[0]!, last = train[train.length - 1]!;
    expect(last.loss as number).toBeLessThan(first.loss as number);
    // the stage groups a per-layer metric by layer: { "expert_tokens.0": { "0": n, "1": m } }
    const perLayer = (k: string) => last[k] as Record<string, number>;
    for (const l of ['0', '1']) {
      const counts = [0, 1, 2, 3].map((e) => perLayer(`expert_tokens.${e}`)[l]!);
      expect(counts.reduce((a, b) => a + b), `layer ${l}: every token reaches 2 experts`).toBe(2 * 2 * 32); // topK * batchSize * seqLen
      expect(perLayer('expert_load_max_over_mean')[l]).toBeGreaterThanOrEqual(1);
      expect(perLayer('load_balance_loss')[l]).toBeCloseTo(perLayer('load_balance')[l]! * 0.02 / 2, 6);
      expect(perLayer('router_z_loss')[l]).toBeCloseTo(perLayer('router_z')[l]! * 0.001 / 2, 6);
    }
  }, 120_000);
});
