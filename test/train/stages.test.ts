// The training interface stages build on: a run folder written before parameter groups and stage
// kinds resumes bit-exact under today's code (configHash unchanged); stage configs are read by
// `kind`; a task's nextBatch may be async and its loss reports metrics (averaged over
// micro-batches into metrics.jsonl, per-layer records from the model's modules); the optimizer
// comes from the config (SGD resumes exactly too).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Module, type FeedForward, type ForwardContext, type ParamInit } from '../../src/nn/index.js';
import { Tensor, add, linear, matmul, memoryStats, scale, sum, swiglu } from '../../src/tensor/index.js';
import { configHash, loadStageConfig, validateStageConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { pretrain } from '../../src/train/pretrain.js';
import { Trainer, type TrainTask } from '../../src/train/trainer.js';
import { vectorTaskState } from './task-state.js';
import { V1_CONFIG } from './fixtures/v1-config.js';
import { stageOfKind } from '../helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-stages-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const fixture = path.join(__dirname, 'fixtures', 'v1-run');
const expected = JSON.parse(fs.readFileSync(path.join(fixture, 'expected.json'), 'utf8')) as { configHash: string; losses: number[]; valLoss: number };
const examples = path.resolve(__dirname, '../../examples');

describe('runs written before stage kinds and parameter groups', () => {
  it('resume bit-exact: the v1 checkpoint (old optimizer file, config without kind) continues with the losses of the old uninterrupted run', async () => {
    const runDir = path.join(root, 'v1');
    fs.cpSync(fixture, runDir, { recursive: true });
    const cfg = validateStageConfig({ ...V1_CONFIG, runDir });
    expect(configHash(cfg)).toBe(expected.configHash);
    const r = await pretrain(stageOfKind(cfg, 'pretrain'), { progress: null });
    expect(r.status).toBe('completed');
    expect(r.resumedFrom).toBe(2);
    expect(r.losses).toEqual(expected.losses.slice(2));
    expect(r.valLoss).toBe(expected.valLoss);
    // and a fresh run of today's code gives the old run's losses
    const fresh = await pretrain(stageOfKind(validateStageConfig({ ...V1_CONFIG, runDir: path.join(root, 'v1-fresh') }), 'pretrain'), { progress: null });
    expect(fresh.losses).toEqual(expected.losses);
  });

  it('configHash of the example configs is what it was before kind and optimizer.type/groups existed', async () => {
    // Computed with commit 2b9e6e8 (tiny-stage2 and paper-stage2 name init, resolved against the working directory).
    const before: Record<string, string> = {
      'tiny-stage1.json': '1f65a023066a2e1d', 'tiny-stage2.json': '9a0dc3cd0230d80a', 'paper-stage1.json': 'f78d020d82c6e702',
      'paper-stage2.json': 'b85f3a04d959b8b7', 'patents-5m.json': 'fb1424eaa6fec2ed',
    };
    // Paths in a config resolve to absolute ones under the checkout, which was /work/main then: put
    // that root back so the check does not depend on where the checkout lives (CI clones elsewhere).
    const root = path.resolve(examples, '..');
    const atRecordedRoot = (v: unknown): unknown =>
      typeof v === 'string' && v.startsWith(root + path.sep) ? path.join('/work/main', path.relative(root, v))
        : Array.isArray(v) ? v.map(atRecordedRoot)
        : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, atRecordedRoot(x)]))
        : v;
    for (const [f, h] of Object.entries(before)) {
      const cfg = await loadStageConfig(path.join(examples, f));
      expect(configHash(atRecordedRoot(cfg) as typeof cfg), f).toBe(h);
    }
  });

  it('spelling out the defaults (kind "pretrain", type "adamw", decayEmbeddings true, no groups) keeps the hash; a group or SGD changes it', () => {
    const h = (x: Record<string, unknown>): string => configHash(validateStageConfig({ ...V1_CONFIG, ...x }));
    const o = V1_CONFIG.optimizer;
    expect(h({ kind: 'pretrain', optimizer: { ...o, type: 'adamw', decayEmbeddings: true, groups: [] } })).toBe(expected.configHash);
    expect(h({ optimizer: { ...o, groups: [{ match: 'lm_head.*', lrScale: 2 }] } })).not.toBe(expected.configHash);
    expect(h({ optimizer: { ...o, decayEmbeddings: false } })).not.toBe(expected.configHash);
    expect(h({ optimizer: { lr: 0.01, type: 'sgd' } })).not.toBe(expected.configHash);
  });
});

describe('stage config kinds and optimizer fields', () => {
  const refuse = (x: Record<string, unknown>, re: RegExp): void => {
    expect(() => validateStageConfig({ ...V1_CONFIG, ...x }, { source: 's.json' })).toThrow(re);
  };
  it('reads kind (default pretrain), refuses unknown kinds naming the field', () => {
    expect(validateStageConfig(V1_CONFIG).kind).toBe('pretrain');
    refuse({ kind: 'finetune' }, /s\.json: kind: must be one of "pretrain", "sft", "reward", "ppo", "dpo", got "finetune"/);
    refuse({ kind: 3 }, /s\.json: kind: must be a non-empty string/);
  });
  it('validates optimizer.type, its own fields and groups, naming the field', () => {
    const o = V1_CONFIG.optimizer;
    const sgd = validateStageConfig({ ...V1_CONFIG, optimizer: { lr: 0.1, type: 'sgd', nesterov: true } }).optimizer;
    expect(sgd).toEqual({ type: 'sgd', lr: 0.1, weightDecay: 0, gradClip: 1, decayEmbeddings: true, groups: [], momentum: 0.9, dampening: 0, nesterov: true });
    refuse({ optimizer: { ...o, type: 'lion' } }, /s\.json: optimizer\.type: must be "adamw" or "sgd", got "lion"/);
    refuse({ optimizer: { ...o, type: 'sgd', beta1: 0.9 } }, /s\.json: optimizer\.beta1: unknown field/);
    refuse({ optimizer: { ...o, momentum: 0.9 } }, /s\.json: optimizer\.momentum: unknown field/);
    refuse({ optimizer: { ...o, type: 'sgd', momentum: 1 } }, /s\.json: optimizer\.momentum: must be a number in \[0, 1\)/);
    refuse({ optimizer: { ...o, type: 'sgd', momentum: 0, nesterov: true } }, /s\.json: optimizer\.nesterov: needs momentum > 0/);
    refuse({ optimizer: { ...o, groups: {} } }, /s\.json: optimizer\.groups: must be an array/);
    refuse({ optimizer: { ...o, groups: [{ match: '/(/' }] } }, /s\.json: optimizer\.groups\[0\]\.match: \/\(\/ is not a valid regular expression/);
    refuse({ optimizer: { ...o, groups: [{ match: 'a*' }, { match: 'b*', lrScale: -1 }] } }, /s\.json: optimizer\.groups\[1\]\.lrScale: must be a number >= 0/);
    refuse({ optimizer: { ...o, groups: [{ match: 'a*', lr: 1 }] } }, /s\.json: optimizer\.groups\[0\]\.lr: unknown field/);
    refuse({ optimizer: { ...o, groups: [{ match: 'a*', name: 'no_decay' }] } }, /s\.json: optimizer\.groups\[0\]\.name: "no_decay" is taken/);
    refuse({ optimizer: { ...o, decayEmbeddings: 'no' } }, /s\.json: optimizer\.decayEmbeddings: must be true or false/);
  });
  it('a group pattern that matches no parameter of the model stops the run before training, naming the group', async () => {
    const cfg = validateStageConfig({ ...V1_CONFIG, runDir: path.join(root, 'nogroup'), optimizer: { ...V1_CONFIG.optimizer, groups: [{ match: 'transformer.h.*' }] } });
    await expect(pretrain(stageOfKind(cfg, 'pretrain'), { progress: null })).rejects.toThrow(/groups\[0\]\.match: "transformer\.h\.\*" matches no parameter/);
  });
});

type ToyBatch = { tokens: Int32Array; k: number };

/** loss = 0.5 w.w - w.x_k, batches a function of a counter; reports k and a per-layer record. */
function toyTask(opts: { async?: boolean; metricName?: string } = {}): TrainTask<ToyBatch> {
  const n = 4;
  const w = Tensor.from(Float32Array.from({ length: n }, (_, i) => Math.cos(i)), [n], { requiresGrad: true });
  const pos = { value: 0 };
  const batch = (k: number): ToyBatch => ({ tokens: new Int32Array(4), k });
  const delay = <T>(v: T): Promise<T> => new Promise((resolve) => setTimeout(() => resolve(v), 1));
  return {
    parameters: () => [['w', w]],
    nextBatch: () => (opts.async ? delay(batch(pos.value++)) : batch(pos.value++)),
    loss: (b) => {
      const x = Tensor.from(Float32Array.from({ length: n }, (_, i) => -Math.sin(b.k * 0.7 + i)), [n, 1]);
      const row = w.reshape([1, n]);
      const loss = add(scale(sum(matmul(row, w.reshape([n, 1]))), 0.5), sum(matmul(row, x)));
      return { loss, metrics: { [opts.metricName ?? 'k']: b.k, perLayer: { '0': b.k * 2, '1': 1 } } };
    },
    evalBatches: async function* (count: number) {
      for (let i = 0; i < count; i++) yield await delay(batch(100 + i));
    },
    ...vectorTaskState(w, pos),
  };
}

const trainerBase = { totalSteps: 6, schedule: { kind: 'constant' as const, lr: 0.05, warmupSteps: 0 }, configHash: 'toy', progress: null };

describe('TrainTask: async batches and metrics', () => {
  it('a task whose nextBatch returns promises trains exactly as the synchronous one; metrics are averaged over micro-batches', async () => {
    const sync = await new Trainer(toyTask(), { ...trainerBase, runDir: path.join(root, 'sync'), gradAccum: 2, evalEvery: 3, evalBatches: 2 }).run();
    const runDir = path.join(root, 'async');
    const r = await new Trainer(toyTask({ async: true }), { ...trainerBase, runDir, gradAccum: 2, evalEvery: 3, evalBatches: 2 }).run();
    expect(r.losses).toEqual(sync.losses);
    expect(r.valLoss).toBe(sync.valLoss);
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl'));
    const train = recs.filter((x) => x.loss !== undefined);
    // step s reads batches k = 2(s-1) and 2(s-1)+1: their mean is 2s - 1.5
    expect(train.map((x) => x.k)).toEqual([0.5, 2.5, 4.5, 6.5, 8.5, 10.5]);
    expect(train[1]!.perLayer).toEqual({ '0': 5, '1': 1 });
    const evals = recs.filter((x) => x.valLoss !== undefined);
    expect(evals.map((x) => x['val.k'])).toEqual([100.5, 100.5]); // two eval batches (k 100, 101)
  });

  it('refuses a task metric that would hide one of the loop\'s fields', async () => {
    await expect(new Trainer(toyTask({ metricName: 'lr' }), { ...trainerBase, runDir: path.join(root, 'clash') }).run()).rejects.toThrow(/the task reports "lr", which the training loop writes itself/);
  });

  it('the optimizer comes from the options: SGD with momentum, stopped and resumed, repeats the uninterrupted run', async () => {
    const sgd = { type: 'sgd' as const, momentum: 0.9, maxGradNorm: 1, groups: [{ match: 'w', lrScale: 0.5 }] };
    const full = await new Trainer(toyTask(), { ...trainerBase, runDir: path.join(root, 'sgd-full'), optimizer: sgd }).run();
    const adam = await new Trainer(toyTask(), { ...trainerBase, runDir: path.join(root, 'adam-full') }).run();
    expect(full.losses).not.toEqual(adam.losses);
    const runDir = path.join(root, 'sgd-cut');
    const ac = new AbortController();
    const first = await new Trainer(toyTask(), { ...trainerBase, runDir, optimizer: sgd, signal: ac.signal, onMetrics: (m) => void (m.step === 4 && ac.abort()) }).run();
    expect(first.status).toBe('interrupted');
    const second = await new Trainer(toyTask(), { ...trainerBase, runDir, optimizer: sgd }).run();
    expect(second.resumedFrom).toBe(4);
    expect([...first.losses, ...second.losses]).toEqual(full.losses);
  });
});

/** A feed-forward that reports a metric per layer (as an SMoE layer reports tokens per expert). */
class ReportingMLP extends Module implements FeedForward {
  constructor(dim: number, hidden: number, init: ParamInit, private readonly layer: number, private readonly aux = false) {
    super();
    this.registerParameter('gate_proj', init([hidden, dim], 'normal'), 'gate_proj.weight');
    this.registerParameter('up_proj', init([hidden, dim], 'normal'), 'up_proj.weight');
    this.registerParameter('down_proj', init([dim, hidden], 'normal'), 'down_proj.weight');
  }
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    ctx.addMetric('rows', x.shape[0]! + this.layer);
    if (this.aux) ctx.addAuxLoss('gate_l2', scale(sum(linear(x, this.param('gate_proj'))), 1e-4));
    return linear(swiglu(linear(x, this.param('gate_proj')), linear(x, this.param('up_proj'))), this.param('down_proj'));
  }
}

describe('pretrain: what the model\'s modules report reaches metrics.jsonl', () => {
  it('per-layer feed-forward metrics as one record per name, keyed by layer', async () => {
    const runDir = path.join(root, 'layers');
    const cfg = validateStageConfig({ ...V1_CONFIG, runDir, steps: 2, model: { ...V1_CONFIG.model, nLayers: 2 } });
    const r = await pretrain(stageOfKind(cfg, 'pretrain'), { progress: null, model: { feedForward: (i, c, init) => new ReportingMLP(c.dim, c.ffnDim, init, i) } });
    expect(r.status).toBe('completed');
    const train = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.loss !== undefined);
    const rows = V1_CONFIG.batchSize * V1_CONFIG.seqLen;
    expect(train.map((x) => x.rows)).toEqual([{ '0': rows, '1': rows + 1 }, { '0': rows, '1': rows + 1 }]);
    // A dense model reports nothing: no extra fields.
    const denseDir = path.join(root, 'layers-dense');
    await pretrain(stageOfKind(validateStageConfig({ ...V1_CONFIG, runDir: denseDir, steps: 1 }), 'pretrain'), { progress: null });
    const dense = readMetrics(path.join(denseDir, 'metrics.jsonl')).find((x) => x.loss !== undefined)!;
    const loopFields = new Set(['step', 'loss', 'lr', 'gradNorm', 'tokens', 'elapsedSec', 'tokensPerSec', 'mfu']);
    expect(Object.keys(dense).filter((k) => !loopFields.has(k))).toEqual([]);
  });

  it('an auxiliary loss a module reports is logged per layer, and native memory stays flat across steps', async () => {
    const runDir = path.join(root, 'aux');
    const cfg = validateStageConfig({ ...V1_CONFIG, runDir, steps: 8, checkpointEvery: 0, model: { ...V1_CONFIG.model, nLayers: 2 } });
    const live: number[] = [];
    const r = await pretrain(stageOfKind(cfg, 'pretrain'), {
      progress: null,
      model: { feedForward: (i, c, init) => new ReportingMLP(c.dim, c.ffnDim, init, i, true) },
      onMetrics: (m) => void (m.loss !== undefined && live.push(memoryStats().cpu.liveBytes)),
    });
    expect(r.status).toBe('completed');
    const train = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.loss !== undefined);
    expect(train).toHaveLength(8);
    for (const rec of train) expect(Object.keys(rec.gate_l2 as Record<string, number>)).toEqual(['0', '1']);
    expect(live).toHaveLength(8);
    expect(live[7]).toBe(live[1]); // the recorder's auxiliary losses are freed every micro-batch
  });
});
