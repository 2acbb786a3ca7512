// Stage configs: the examples validate, defaults are filled, input paths resolve against the
// file and run folders (runDir, init) against the working directory, and every wrong, missing or unknown field is refused with an error naming it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { configHash, loadStageConfig, stageSchedule, tokensPerStep, totalSteps, validateStageConfig } from '../../src/train/config.js';
import { learningRate } from '../../src/train/schedule.js';
import { stageOfKind } from '../helpers.js';

const examples = path.resolve(__dirname, '../../examples');
const base = (): Record<string, unknown> => ({ name: 'r', model: 'tiny', seqLen: 64, batchSize: 2, steps: 10, optimizer: { lr: 1e-3 } });

function refuse(raw: unknown, field: string): void {
  try {
    validateStageConfig(raw, { source: 'stage.json' });
  } catch (err) {
    expect(err).toBeInstanceOf(PatentGPTError);
    expect((err as PatentGPTError).code).toBe('E_CONFIG');
    expect((err as Error).message).toContain(`stage.json: ${field}`);
    return;
  }
  expect.fail(`accepted a config with a bad ${field}`);
}

describe('stage config', () => {
  it('validates every example config', async () => {
    for (const f of ['tiny-stage1.json', 'tiny-stage2.json', 'paper-stage1.json', 'paper-stage2.json']) {
      const cfg = await loadStageConfig(path.join(examples, f));
      expect(cfg.name).toBe(JSON.parse(fs.readFileSync(path.join(examples, f), 'utf8')).name);
    }
    const s1 = await loadStageConfig(path.join(examples, 'paper-stage1.json'));
    const s2 = await loadStageConfig(path.join(examples, 'paper-stage2.json'));
    expect([s1.seqLen, s2.seqLen]).toEqual([4096, 16384]);
    expect(s2.context).toEqual({ ropeTheta: 1000000 });
    expect(s2.init).toBe(path.resolve('runs/patentgpt-stage1')); // run folders: relative to the working directory
    const t1 = stageOfKind(await loadStageConfig(path.join(examples, 'tiny-stage1.json')), 'pretrain');
    expect(t1.data).toEqual({ manifests: [], sample: true, weights: { patent: 0.6, law: 0.25, qa: 0.15 }, valFraction: 0.05 });
    expect(t1.runDir).toBe(path.join('runs', 'tiny-stage1'));
  });

  it('fills defaults and derives steps from a token budget', () => {
    const cfg = stageOfKind(validateStageConfig({ ...base(), steps: undefined, tokenBudget: 1000, gradAccum: 2 }), 'pretrain');
    expect(tokensPerStep(cfg)).toBe(256);
    expect(totalSteps(cfg)).toBe(4);
    expect(totalSteps(cfg, 2)).toBe(2);
    expect(cfg.optimizer).toEqual({ type: 'adamw', lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradClip: 1, decayEmbeddings: true, groups: [] });
    expect(cfg.schedule).toEqual({ kind: 'cosine', warmupSteps: 0, minLr: 1e-4 });
    expect(cfg.data.sample).toBe(true);
    expect(cfg.tokenizer).toBe('byte');
    const sched = stageSchedule(cfg);
    expect(sched).toEqual({ kind: 'cosine', lr: 1e-3, warmupSteps: 0, totalSteps: 4, minLr: 1e-4 });
    expect(learningRate(sched, 4)).toBe(1e-4);
  });

  it('resolves input paths against the config file, and run folders (runDir, init) against the working directory', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-cfg-'));
    const file = path.join(dir, 'sub', 's.json');
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(file, JSON.stringify({ ...base(), model: './model/config.json', init: '../ck', data: { manifests: ['tok/manifest.json'] } }));
    const cfg = stageOfKind(await loadStageConfig(file), 'pretrain');
    expect(cfg.model).toBe(path.join(dir, 'sub', 'model', 'config.json'));
    expect(cfg.init).toBe(path.resolve('../ck'));
    // stage 2's init names stage 1's run folder as stage 1 wrote it (default runs/<name>, or an explicit runDir)
    const s1 = path.join(dir, 'sub', 's1.json');
    const s2 = path.join(dir, 'sub', 's2.json');
    fs.writeFileSync(s1, JSON.stringify({ ...base(), name: 'first' }));
    fs.writeFileSync(s2, JSON.stringify({ ...base(), name: 'second', init: 'runs/first' }));
    expect(path.resolve((await loadStageConfig(s1)).runDir)).toBe((await loadStageConfig(s2)).init);
    fs.writeFileSync(s1, JSON.stringify({ ...base(), name: 'first', runDir: 'out/one' }));
    fs.writeFileSync(s2, JSON.stringify({ ...base(), name: 'second', init: 'out/one' }));
    expect(path.resolve((await loadStageConfig(s1)).runDir)).toBe((await loadStageConfig(s2)).init);
    expect(cfg.data.manifests).toEqual([path.join(dir, 'sub', 'tok', 'manifest.json')]);
    expect(cfg.data.sample).toBe(false);
    fs.writeFileSync(file, '{ "name": ');
    await expect(loadStageConfig(file)).rejects.toThrow(/s.json: not valid JSON/);
    await expect(loadStageConfig(path.join(dir, 'none.json'))).rejects.toThrow(/none.json: cannot read/);
    fs.rmSync(dir, { recursive: true });
  });

  it('refuses wrong, missing and unknown fields by name', () => {
    const b = base();
    refuse({ ...b, name: undefined }, 'name');
    refuse({ ...b, name: 'a/b' }, 'name');
    refuse({ ...b, model: 3 }, 'model');
    refuse({ ...b, seqLen: 0 }, 'seqLen');
    refuse({ ...b, batchSize: 1.5 }, 'batchSize');
    refuse({ ...b, steps: undefined }, 'steps');
    refuse({ ...b, tokenBudget: 100 }, 'tokenBudget');
    refuse({ ...b, optimizer: {} }, 'optimizer.lr');
    refuse({ ...b, optimizer: { lr: 1e-3, beta2: 1 } }, 'optimizer.beta2');
    refuse({ ...b, optimizer: { lr: 1e-3, momentum: 0.9 } }, 'optimizer.momentum');
    refuse({ ...b, schedule: { kind: 'linear' } }, 'schedule.kind');
    refuse({ ...b, schedule: { warmupSteps: 11 } }, 'schedule.warmupSteps');
    refuse({ ...b, schedule: { minLr: 1 } }, 'schedule.minLr');
    refuse({ ...b, schedule: { kind: 'wsd' } }, 'schedule.decaySteps');
    refuse({ ...b, schedule: { kind: 'wsd', decaySteps: 20 } }, 'schedule.decaySteps');
    refuse({ ...b, schedule: { decaySteps: 2 } }, 'schedule.decaySteps');
    refuse({ ...b, data: { weights: { patent: -1 } } }, 'data.weights.patent');
    refuse({ ...b, data: { weights: { patent: 0 } } }, 'data.weights');
    refuse({ ...b, data: { manifests: 'x' } }, 'data.manifests');
    refuse({ ...b, data: { manifests: [], sample: false } }, 'data');
    refuse({ ...b, data: { valFraction: 1 } }, 'data.valFraction');
    refuse({ ...b, data: { shards: [] } }, 'data.shards');
    refuse({ ...b, context: {} }, 'context');
    refuse({ ...b, context: { posScale: 0.5 } }, 'context.posScale');
    refuse({ ...b, context: { ropeBase: 1e6 } }, 'context.ropeBase');
    refuse({ ...b, lr: 1 }, 'lr');
    refuse({ ...b, evalBatches: 0 }, 'evalBatches');
    refuse([], 'config');
  });

  it('validates the hardening fields by name: threads bounded, divergence policy, memory limit', () => {
    const b = base();
    refuse({ ...b, threads: 100000 }, 'threads');
    refuse({ ...b, threads: -1 }, 'threads');
    refuse({ ...b, maxNonFiniteSteps: -1 }, 'maxNonFiniteSteps');
    refuse({ ...b, maxNonFiniteSteps: 1.5 }, 'maxNonFiniteSteps');
    refuse({ ...b, onDivergence: 'ignore' }, 'onDivergence');
    refuse({ ...b, rollbackLrFactor: 1 }, 'rollbackLrFactor');
    refuse({ ...b, rollbackLrFactor: 0 }, 'rollbackLrFactor');
    refuse({ ...b, maxRollbacks: -2 }, 'maxRollbacks');
    refuse({ ...b, memoryLimitGiB: -1 }, 'memoryLimitGiB');
    refuse({ ...b, memoryCheck: 'no' }, 'memoryCheck');
    const cfg = validateStageConfig(b);
    expect(cfg).toMatchObject({ threads: 0, maxNonFiniteSteps: 3, onDivergence: 'stop', rollbackLrFactor: 0.5, maxRollbacks: 3, memoryLimitGiB: 0, memoryCheck: true });
    expect(validateStageConfig({ ...b, threads: 64 }).threads).toBe(64);
    // the policy fields do not change the hash: a diverged run can be resumed with onDivergence "rollback"
    expect(configHash(validateStageConfig({ ...b, onDivergence: 'rollback', maxNonFiniteSteps: 9, memoryLimitGiB: 4, memoryCheck: false }))).toBe(configHash(cfg));
  });

  it('hashes what decides the training, not the logging cadence', () => {
    const a = validateStageConfig(base());
    expect(configHash(a)).toBe(configHash(validateStageConfig({ ...base(), evalEvery: 7, threads: 4, logEvery: 3 })));
    expect(configHash(a)).not.toBe(configHash(validateStageConfig({ ...base(), seed: 1 })));
    expect(configHash(a)).toMatch(/^[0-9a-f]{16}$/);
  });
});
