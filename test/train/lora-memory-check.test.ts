// The memory check before a stage allocates: under LoRA only the adapters get gradients and
// optimizer state, so a run that fits as LoRA is not refused for what full fine-tuning of the
// same model would need.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readConfig, validateConfig } from '../../src/models/index.js';
import { configHash, validateStageConfig, type SftConfig } from '../../src/train/config.js';
import { estimateTrainingMemory } from '../../src/train/memory.js';
import { prepareStage } from '../../src/train/stages/common.js';
import { TINY, sftWorkspace } from './sft-fixtures.js';

const { root, dataFile, initDir } = sftWorkspace('pgpt-lora-mem-');

function config(lora: boolean, limitGiB: number, runDir: string): SftConfig {
  const cfg = validateStageConfig({
    kind: 'sft', name: 'mem', model: initDir, tokenizer: 'byte', init: initDir, data: { sources: [dataFile] },
    seqLen: 128, batchSize: 4, steps: 2, optimizer: { lr: 0.01 }, threads: 1, memoryLimitGiB: limitGiB,
    ...(lora ? { lora: { r: 2, targetModules: ['q_proj', 'v_proj'] } } : {}),
  }, { source: 's.json' }) as SftConfig;
  cfg.runDir = runDir;
  return cfg;
}

describe('memory check under LoRA', () => {
  it('counts gradients and AdamW state for the adapters only', () => {
    const m = validateConfig(TINY);
    const full = estimateTrainingMemory(m, { batchSize: 4, seqLen: 128 });
    const lora = estimateTrainingMemory(m, { batchSize: 4, seqLen: 128, trainableParameters: 1000 });
    expect(lora.weights).toBe(full.weights);
    expect(lora.activations).toBe(full.activations);
    expect(lora.gradients).toBe(4000);
    expect(lora.optimizer).toBe(8000);
    expect(full.total - lora.total).toBe(5 * (full.weights - 4000));
  });

  it('a LoRA run under a limit that full fine-tuning exceeds is prepared; the same run without LoRA is refused', async () => {
    const model = await readConfig(initDir);
    const full = estimateTrainingMemory(model, { batchSize: 4, seqLen: 128 }).total;
    const floor = full - 5 * estimateTrainingMemory(model, { batchSize: 4, seqLen: 128 }).weights; // nothing trained
    const limitGiB = (full + floor) / 2 / 1024 ** 3;
    const withLora = config(true, limitGiB, path.join(root, 'lora'));
    await expect(prepareStage(withLora, {}, configHash(withLora))).resolves.toMatchObject({ runDir: withLora.runDir });
    const without = config(false, limitGiB, path.join(root, 'full'));
    await expect(prepareStage(without, {}, configHash(without))).rejects.toThrow(/the training step needs about/);
  });
});
