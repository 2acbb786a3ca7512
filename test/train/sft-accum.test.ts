// Gradient accumulation in the SFT stage weighs micro-batches by their assistant tokens (TRL's and
// transformers' num_items_in_batch): SftStepTargets counts each step's supervised targets over all
// micro-batches and ranks exactly as the ranks' streams deliver them (shuffled, across epochs),
// and a run of one conversation per micro-batch, two per step, has the per-step losses of a run
// of two conversations per batch (the mean of the two micro-batch means would not).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SftBatchStream, loadSftData } from '../../src/data/sft/index.js';
import { ByteTokenizer } from '../../src/tokenizer/byte.js';
import { validateStageConfig, type SftConfig } from '../../src/train/config.js';
import { SftStepTargets, llama2ByteRenderer, sft } from '../../src/train/stages/sft.js';
import { trainLosses } from './child-run.js';
import { writeAlpaca, writeInit } from './sft-fixtures.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-sft-accum-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const dataFile = path.join(root, 'reverse.jsonl');
const initDir = path.join(root, 'init');
beforeAll(async () => {
  writeAlpaca(dataFile, 37);
  await writeInit(initDir);
});

describe('SftStepTargets', () => {
  it('equals the supervised targets the ranks\' streams deliver for each step (shuffled, packed, over several epochs)', async () => {
    const data = await loadSftData({ sources: [{ path: dataFile }], renderer: llama2ByteRenderer(new ByteTokenizer()), maxLength: 64 });
    for (const { shuffle, worldSize, gradAccum, batchSize, mode } of [
      { shuffle: true, worldSize: 2, gradAccum: 3, batchSize: 2, mode: 'pack' as const },
      { shuffle: false, worldSize: 1, gradAccum: 2, batchSize: 3, mode: 'pad' as const },
    ]) {
      const opts = { seqLen: 64, batchSize, mode, shuffle, seed: 5 };
      const streams = Array.from({ length: worldSize }, (_, rank) => new SftBatchStream(data.train, { ...opts, rank, worldSize }));
      const targets = new SftStepTargets(streams[0]!, { gradAccum, seed: 5, shuffle });
      const epochs = Math.ceil((4 * streams[0]!.rows.length) / (gradAccum * worldSize * batchSize)); // about 4 epochs of steps
      for (let step = 0; step < epochs; step++) {
        let n = 0;
        for (let k = 0; k < gradAccum; k++) for (const s of streams) n += s.next().targetCount;
        expect(targets.of(step), `step ${step} (shuffle ${shuffle}, W ${worldSize}, G ${gradAccum})`).toBe(n);
      }
    }
  });
});

describe('sft gradient accumulation', () => {
  const run = async (name: string, batchSize: number, gradAccum: number): Promise<number[]> => {
    const cfg = validateStageConfig({
      kind: 'sft', name, model: initDir, tokenizer: 'byte', init: initDir,
      data: { sources: [dataFile], valFraction: 0, shuffle: false, packing: 'pad' },
      seqLen: 128, batchSize, gradAccum, steps: 6, optimizer: { lr: 0.003, gradClip: 0 }, schedule: { kind: 'constant' },
      evalEvery: 0, checkpointEvery: 0, threads: 1, seed: 1,
    }) as SftConfig;
    cfg.runDir = path.join(root, name);
    expect((await sft(cfg, { progress: null })).status).toBe('completed');
    return trainLosses(cfg.runDir);
  };

  it('one conversation a micro-batch, four a step, gives the losses of four conversations a batch', async () => {
    const whole = await run('b4', 4, 1);
    const accum = await run('b1g4', 1, 4);
    const worst = Math.max(...whole.map((x, i) => Math.abs(x - accum[i]!)));
    expect(worst).toBeLessThan(1e-5);
  }, 120_000);
});
