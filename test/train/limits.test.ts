// Limits checked before anything is allocated or written (issue 13, hardening): a config's
// threads are bounded; a step whose estimated memory exceeds the machine's is refused with the
// estimate; a tensor too large for a typed array is refused by name (no bare RangeError).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, validateConfig } from '../../src/models/index.js';
import { memoryStats, resetPeakMemory, scope } from '../../src/tensor/index.js';
import { validateStageConfig } from '../../src/train/config.js';
import { AdamW } from '../../src/train/optimizer.js';
import { MAX_TENSOR_ELEMENTS, estimateTrainingMemory, machineMemory } from '../../src/train/memory.js';
import { pretrain } from '../../src/train/pretrain.js';
import { stageOfKind } from '../helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-limits-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const tiny = { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 160, maxSeqLen: 64 };
const stage = (name: string, extra: Record<string, unknown> = {}) =>
  validateStageConfig({ name, runDir: path.join(root, name), model: tiny, seqLen: 64, batchSize: 2, steps: 1, optimizer: { lr: 1e-3 }, evalEvery: 0, threads: 1, ...extra }, { source: `${name}.json` });

describe('limits', () => {
  it('refuses a 70B model on a machine with less memory, with the estimate, before allocating or writing anything', async () => {
    const cfg = stage('big', { model: 'llama2-70b', seqLen: 512 });
    const { preset } = await import('../../src/models/index.js');
    const need = estimateTrainingMemory(preset('llama2-70b').config, { batchSize: 2, seqLen: 512 }).total;
    if (need <= machineMemory()) return void console.warn(`skipped: this machine has ${machineMemory()} bytes, enough for a 70B step`);
    const err = await pretrain(stageOfKind(cfg, 'pretrain'), { configFile: `${cfg.name}.json` }).then(() => null, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/big\.json: the training step needs about \d+(\.\d+)? GiB \(weights 25\d\.\d GiB, gradients 25\d\.\d GiB, AdamW moments 51\d\.\d GiB, activations of a 2 x 512 micro-batch/);
    expect(err?.message).toMatch(/lower batchSize .* set memoryLimitGiB, or memoryCheck: false/);
    expect(fs.existsSync(cfg.runDir)).toBe(false);
    expect(machineMemory()).toBeGreaterThan(0);
  });

  it('counts the optimizer state of the configured optimizer: AdamW two moments, SGD with momentum one, plain SGD none', async () => {
    const m = (await import('../../src/models/index.js')).preset('llama2-70b').config;
    const est = (b?: number) => estimateTrainingMemory(m, { batchSize: 1, seqLen: 64, ...(b !== undefined ? { optimizerBuffers: b } : {}) });
    expect(est(1).optimizer).toBe(est().weights);
    expect(est(0).optimizer).toBe(0);
    expect(est().total - est(1).total).toBe(2 * est().weights); // one moment fewer, and its checkpoint copy
    const sgd = stage('sgd-big', { model: 'llama2-70b', seqLen: 512, optimizer: { type: 'sgd', lr: 0.1 }, memoryLimitGiB: 1 });
    await expect(pretrain(stageOfKind(sgd, 'pretrain'), { configFile: 'sgd-big.json' })).rejects.toThrow(/sgd-big\.json: the training step needs about .* optimizer state 25\d\.\d GiB/);
  });

  it('memoryLimitGiB sets the limit; the tiny model fits by default', async () => {
    const err = await pretrain(stageOfKind(stage('limited', { memoryLimitGiB: 0.001 }), 'pretrain'), { configFile: 'limited.json' }).then(() => null, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/limited\.json: the training step needs about .* more than the 0\.00 GiB of memoryLimitGiB/);
    const r = await pretrain(stageOfKind(stage('fits', { checkpointEvery: 0 }), 'pretrain'), { progress: null });
    expect(r.status).toBe('completed');
  });

  it('refuses a tensor too large for a typed array by name, even with memoryCheck off', async () => {
    const huge = { vocabSize: 262144, dim: 4608, nLayers: 1, nHeads: 36, nKvHeads: 36, ffnDim: 128, maxSeqLen: 64 };
    expect(262144 * 4608).toBeGreaterThan(MAX_TENSOR_ELEMENTS);
    const cfg = stage('huge', { model: huge, memoryCheck: false });
    const err = await pretrain(stageOfKind(cfg, 'pretrain'), { configFile: `${cfg.name}.json` }).then(() => null, (e: unknown) => e as Error);
    expect(err?.name).toBe('PatentGPTError');
    expect(err?.message).toMatch(/huge\.json: model: model\.embed_tokens\.weight would hold 1,207,959,552 values \(4\.50 GiB\), more than one tensor can hold here/);
    expect(fs.existsSync(cfg.runDir)).toBe(false);
  });

  it('threads: a config may not ask for more than 1024', async () => {
    expect(() => stage('t', { threads: 5000 })).toThrow(/t\.json: threads: must be at most 1024, got 5000/);
    // a config object built in code is checked too
    const cfg = { ...stage('t2'), threads: 5000 };
    await expect(pretrain(stageOfKind(cfg, 'pretrain'), { configFile: 't2.json' })).rejects.toThrow(/t2\.json: threads: must be an integer in \[0, 1024\], got 5000/);
  });

  it('the memory estimate covers the measured peak of a training step (and is not wildly above it)', () => {
    for (const [m, B, T] of [[tiny, 4, 64], [{ vocabSize: 4096, dim: 128, nLayers: 2, nHeads: 4, nKvHeads: 4, ffnDim: 256, maxSeqLen: 128 }, 2, 128]] as const) {
      const cfg = validateConfig(m);
      resetPeakMemory();
      const before = memoryStats().cpu.liveBytes;
      const model = new LlamaForCausalLM(cfg, { seed: 1 });
      const opt = new AdamW(model.namedParameters());
      const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % 250);
      for (let s = 0; s < 2; s++) {
        const l = scope(() => model.loss({ tokens: ids, targets: ids, cuSeqlens: Int32Array.from({ length: B + 1 }, (_, i) => i * T) }));
        l.backward();
        l.dispose();
        opt.step(1e-3);
        opt.zeroGrad();
      }
      const peak = memoryStats().cpu.peakBytes - before;
      opt.dispose();
      model.dispose();
      const est = estimateTrainingMemory(cfg, { batchSize: B, seqLen: T });
      const step = est.total - est.checkpoint; // native memory of the step (checkpoint copies are JS arrays)
      expect(step).toBeGreaterThanOrEqual(peak);
      expect(step).toBeLessThan(2 * peak);
    }
  });
});
