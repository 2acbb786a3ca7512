// Loss scaling in the trainer (lossScale; src/train/loss-scale.ts): the loss times the scale
// before backward, the gradients unscaled in place and checked for inf/NaN (unscaleGradients, the
// native unscaleCheck) before clipping and the optimizer, GradScaler's dynamic rule (skip the
// step and halve on overflow, grow after growthInterval finite steps), its state in checkpoints.
// (a) a fixed power-of-two scale is bit-identical to none (f32 and bf16 matmuls, with gradient
// accumulation and clipping); (b) a huge initial scale overflows, skips and halves until finite,
// then trains exactly as a run started at that scale on the same batches, and is not a divergence;
// (c) a resumed run scales and trains exactly as the uninterrupted one; (d) precision fp16 (f16
// matmul inputs, dynamic scaling by default) follows the f32 loss curve of the tiny pretrain stage.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { Tensor, matmul, matmulPrecision, mul, noGrad, scale, sub, sum, type Device, type MatmulPrecision } from '../../src/tensor/index.js';
import { unscaleGradients } from '../../src/tensor/ops/lossScale.js';
import { configHash, validateStageConfig } from '../../src/train/config.js';
import { LossScaler } from '../../src/train/loss-scale.js';
import { readMetrics } from '../../src/train/metrics.js';
import { learningRate } from '../../src/train/schedule.js';
import { pretrain } from '../../src/train/pretrain.js';
import { Trainer, type TrainTask, type TrainerOptions } from '../../src/train/trainer.js';
import { describeDevices, randomArray, stageOfKind } from '../helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-lossscale-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Batch {
  tokens: Int32Array;
  x: Float32Array;
  y: Float32Array;
}

const N = 8, IN = 6, HID = 5, OUT = 3;
/** Batch k: inputs and targets from a seed (so any run can start at any batch). Large values: gradients of ~100. */
function batchAt(k: number): Batch {
  return {
    tokens: new Int32Array(N),
    x: Float32Array.from(randomArray(N * IN, 1000 + k, 3)),
    y: Float32Array.from(randomArray(N * OUT, 2000 + k, 10)),
  };
}

/** A two-layer linear regression, loss mean((x W1 W2 - y)^2); its data position is the batch index. */
function mlpTask(start = 0, device: Device = 'cpu'): TrainTask<Batch> & { weights: () => Float32Array[] } {
  const w1 = Tensor.from(Float32Array.from(randomArray(IN * HID, 7, 0.5)), [IN, HID], { requiresGrad: true, device });
  const w2 = Tensor.from(Float32Array.from(randomArray(HID * OUT, 8, 0.5)), [HID, OUT], { requiresGrad: true, device });
  const pos = { value: start };
  const ws = [w1, w2];
  return {
    parameters: () => [['w1', w1], ['w2', w2]],
    nextBatch: () => batchAt(pos.value++),
    loss: (b) => {
      const d = sub(matmul(matmul(Tensor.from(b.x, [N, IN], { device }), w1), w2), Tensor.from(b.y, [N, OUT], { device }));
      return { loss: scale(sum(mul(d, d)), 1 / (N * OUT)) };
    },
    dataPosition: () => ({ pos: pos.value }),
    restoreDataPosition: (p) => {
      pos.value = (p as { pos: number }).pos;
    },
    checkpointFiles: () => ws.map((w, i) => ({ name: `w${i}.bin`, content: Buffer.from((w.toArray() as Float32Array).buffer) })),
    restoreCheckpoint: async (ck) => {
      for (const [i, w] of ws.entries()) {
        const buf = await ck.read(`w${i}.bin`);
        noGrad(() => w.write(new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength))));
      }
    },
    weights: () => ws.map((w) => w.toArray() as Float32Array),
  };
}

let runs = 0;
const base = (extra: Partial<TrainerOptions>): TrainerOptions => ({
  runDir: path.join(root, `run-${runs++}`), totalSteps: 10, configHash: 'mlp', progress: null,
  schedule: { kind: 'constant', lr: 0.01, warmupSteps: 0 }, optimizer: { weightDecay: 0.01, maxGradNorm: 0 }, ...extra,
});
const bits = (xs: Float32Array[]): number[][] => xs.map((x) => Array.from(new Uint32Array(x.buffer.slice(0))));

// On each device present (cuda: the CUDA unscaleCheck; skipped with the reason where there is no GPU).
describeDevices('loss scaling in the trainer', ['unscaleCheck'], (device) => {
  const mlp = (start = 0) => mlpTask(start, device);
  for (const precision of ['f32', 'bf16'] as const)
    it(`at precision ${precision}: losses, gradient norms and weights bit-identical to no scaling (gradAccum 2, clipping on)`, async () => {
      // maxGradNorm 1 clips every step: the clip must see the unscaled gradients.
      const opts = { totalSteps: 8, gradAccum: 2, precision, optimizer: { weightDecay: 0.01, maxGradNorm: 1 } };
      const plain = mlp(), scaled = mlp();
      const ra = base(opts);
      const a = await new Trainer(plain, ra).run();
      const rb = base({ ...opts, lossScale: 1024 });
      const b = await new Trainer(scaled, rb).run();
      expect(a.status).toBe('completed');
      expect(b).toMatchObject({ status: 'completed', overflowSteps: 0, nonFiniteSteps: 0 });
      expect(b.losses).toEqual(a.losses);
      expect(bits(scaled.weights())).toEqual(bits(plain.weights()));
      expect(bits(plain.weights())).not.toEqual(bits(mlp().weights())); // it did train
      const recs = readMetrics(path.join(rb.runDir, 'metrics.jsonl'));
      expect(recs.every((r) => r.lossScale === 1024)).toBe(true);
      expect(recs.map((r) => r.gradNorm)).toEqual(readMetrics(path.join(ra.runDir, 'metrics.jsonl')).map((r) => r.gradNorm));
      expect(recs[0]!.gradNorm as number).toBeGreaterThan(1); // clipped
    });

  it('skips and halves until the gradients are finite, then trains exactly as a run started at that scale; not a divergence', async () => {
    const steps = 14;
    const lines: string[] = [];
    const ra = base({ totalSteps: steps, lossScale: { initialScale: 2 ** 127 }, maxNonFiniteSteps: 1, progress: { write: (c: string) => lines.push(c), isTTY: false } });
    const taskA = mlp();
    const a = await new Trainer(taskA, ra).run();
    const recs = readMetrics(path.join(ra.runDir, 'metrics.jsonl'));
    const k = recs.filter((r) => r.overflow === 1).length;
    expect(k).toBeGreaterThanOrEqual(3); // gradients of ~100 overflow f32 at scales above ~2^121
    expect(a).toMatchObject({ status: 'completed', step: steps, overflowSteps: k, nonFiniteSteps: 0 }); // k > maxNonFiniteSteps
    // the first k steps were skipped at 2^127, 2^126, ...; from then on the scale stays
    expect(recs.slice(0, k).map((r) => [r.step, r.skipped, r.lossScale])).toEqual(
      Array.from({ length: k }, (_, i) => [i + 1, 1, 2 ** (127 - i)]));
    expect(recs.slice(k).every((r) => r.skipped === undefined && r.lossScale === 2 ** (127 - k))).toBe(true);
    expect(lines.join('')).toMatch(/step 1: gradients overflowed at loss scale 1\.7\d+e\+38; step skipped, weights unchanged, loss scale now 8\.5\d+e\+37/);
    // started at the final scale on the batches after the skipped ones: the same losses and weights
    const taskB = mlp(k);
    const b = await new Trainer(taskB, base({ totalSteps: steps - k, lossScale: { initialScale: 2 ** (127 - k) } })).run();
    expect(b.overflowSteps).toBe(0);
    expect(a.losses.slice(k)).toEqual(b.losses);
    expect(bits(taskA.weights())).toEqual(bits(taskB.weights()));
  });

  it('the learning-rate schedule follows the loop step through skipped steps (torch: scheduler.step() every iteration)', async () => {
    const schedule = { kind: 'cosine' as const, lr: 0.01, warmupSteps: 8, totalSteps: 12, minLr: 0.001 };
    const r = base({ totalSteps: 12, schedule, lossScale: { initialScale: 2 ** 127 } });
    await new Trainer(mlp(), r).run();
    const recs = readMetrics(path.join(r.runDir, 'metrics.jsonl'));
    const k = recs.filter((x) => x.overflow === 1).length;
    expect(k).toBeGreaterThanOrEqual(3);
    // step s (1-based) runs at the schedule's lr of s - 1, skipped or not: the first update after
    // k overflows is at warmup step k, not at step 0 (AdamW's own step count did not move)
    expect(recs.map((x) => x.lr)).toEqual(Array.from({ length: 12 }, (_, i) => learningRate(schedule, i)));
  });

  it('a fixed scale that overflows is an ordinary non-finite step: counted, and the run diverges', async () => {
    const r = await new Trainer(mlp(), base({ totalSteps: 6, lossScale: 2 ** 127, maxNonFiniteSteps: 2 })).run();
    expect(r).toMatchObject({ status: 'diverged', step: 3, nonFiniteSteps: 3, overflowSteps: 3 });
  });

  it('a run stopped and resumed from its checkpoint matches the uninterrupted one bit for bit, the scale included', async () => {
    // 2^124 overflows at first, growthInterval 2 then grows it back into overflow now and then:
    // the scale and the good-step count both change across the checkpoint.
    const ls = { initialScale: 2 ** 124, growthInterval: 2 };
    const full = base({ totalSteps: 16, lossScale: ls });
    const taskF = mlp();
    const f = await new Trainer(taskF, full).run();
    expect(f.overflowSteps).toBeGreaterThanOrEqual(3);
    const runDir = path.join(root, `resume-${device}`);
    const first = await new Trainer(mlp(), { ...full, runDir, totalSteps: 7 }).run();
    expect(first.status).toBe('completed');
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoints', 'step-7', 'state.json'), 'utf8'));
    const fr = readMetrics(path.join(full.runDir, 'metrics.jsonl'));
    expect(state.extra.lossScale.scale).toBe(fr[7]!.lossScale); // the scale step 8 uses
    const taskR = mlp();
    const second = await new Trainer(taskR, { ...full, runDir }).run();
    expect(second.resumedFrom).toBe(7);
    expect([...first.losses, ...second.losses]).toEqual(f.losses);
    expect(bits(taskR.weights())).toEqual(bits(taskF.weights()));
    const rr = readMetrics(path.join(runDir, 'metrics.jsonl'));
    expect(rr.map((r) => [r.step, r.lossScale, r.overflow])).toEqual(fr.map((r) => [r.step, r.lossScale, r.overflow]));
  });
});

describe('lossScale settings', () => {
  const cfg = {
    name: 'p', runDir: path.join(root, 'cfg'), model: 'llama-5m', data: { sample: true }, seqLen: 16, batchSize: 1, steps: 1, optimizer: { lr: 0.001 },
  };
  it('precision accepts fp16; lossScale "dynamic", "off", a number or settings; bad values name the field', () => {
    expect(validateStageConfig({ ...cfg, precision: 'fp16' }).precision).toBe('fp16');
    expect(validateStageConfig({ ...cfg, lossScale: 'dynamic' }).lossScale).toBe('dynamic');
    expect(validateStageConfig({ ...cfg, lossScale: 4096 }).lossScale).toBe(4096);
    expect(validateStageConfig({ ...cfg, lossScale: { initialScale: 1024, growthInterval: 100 } }).lossScale).toEqual({ initialScale: 1024, growthInterval: 100 });
    expect(validateStageConfig(cfg).lossScale).toBeUndefined();
    expect(() => validateStageConfig({ ...cfg, precision: 'fp8' }, { source: 'x.json' })).toThrow(/x\.json: precision: must be "f32", "bf16" or "fp16"/);
    expect(() => validateStageConfig({ ...cfg, lossScale: -1 }, { source: 'x.json' })).toThrow(/x\.json: lossScale: a fixed scale must be a positive number/);
    expect(() => validateStageConfig({ ...cfg, lossScale: 'auto' }, { source: 'x.json' })).toThrow(/x\.json: lossScale: must be "dynamic", "off"/);
    expect(() => validateStageConfig({ ...cfg, lossScale: { growthIntervall: 3 } }, { source: 'x.json' })).toThrow(/lossScale: unknown setting "growthIntervall"/);
    expect(() => validateStageConfig({ ...cfg, lossScale: { backoffFactor: 2 } }, { source: 'x.json' })).toThrow(/lossScale: .*backoff factor must be in \(0, 1\)/);
    expect(() => validateStageConfig({ ...cfg, lossScale: { initialScale: 2 ** 128 } })).toThrow(/initialScale must be a positive number finite in f32/);
  });
  it('the config hash holds lossScale unless it is its precision\'s default', () => {
    const h = (c: object) => configHash(validateStageConfig({ ...cfg, ...c }));
    expect(h({ lossScale: 'off' })).toBe(h({}));
    expect(h({ precision: 'fp16', lossScale: 'dynamic' })).toBe(h({ precision: 'fp16' }));
    expect(h({ lossScale: 1024 })).not.toBe(h({}));
    expect(h({ precision: 'fp16', lossScale: 'off' })).not.toBe(h({ precision: 'fp16' }));
  });
  it('the scaler: fp16 runs scale dynamically from 2^16 by default, others not at all', () => {
    const t = (precision: MatmulPrecision) => new Trainer(mlpTask(), base({ precision }));
    expect(() => t('fp16')).not.toThrow();
    expect(LossScaler.create('dynamic')!.scale).toBe(65536);
    expect(LossScaler.create('off')).toBeNull();
    expect(() => new Trainer(mlpTask(), base({ lossScale: { minScale: 0 } }))).toThrow(PatentGPTError);
  });
  it('unscaleGradients: in place, exact for powers of two, one flag for all; wrong dtype is an error', () => {
    const a = Tensor.from(Float32Array.from([1024, -2048, 3]), [3]), b = Tensor.from(Float32Array.from([4, 8]), [2]);
    expect(unscaleGradients([a, b], 1 / 1024)).toBe(false);
    expect(Array.from(a.toArray() as Float32Array)).toEqual([1, -2, 3 / 1024]);
    const c = Tensor.from(Float32Array.from([1, Number.POSITIVE_INFINITY]), [2]);
    expect(unscaleGradients([a, c, b], 0.5)).toBe(true);
    expect(() => unscaleGradients([a.to('bf16')], 1)).toThrow(PatentGPTError);
    expect(() => unscaleGradients([a], 0)).toThrow(/invScale/);
  });
});

const example = new URL('../../examples/tiny-stage1.json', import.meta.url).pathname;

describe('fp16 mixed precision on the tiny pretrain stage', () => {
  it('follows the f32 loss curve within noise, scaling the loss dynamically from 2^16, and restores the precision', async () => {
    const steps = 40;
    const run = async (precision: 'f32' | 'fp16') => {
      const runDir = path.join(root, `tiny-${precision}`);
      const stage = stageOfKind(validateStageConfig({
        ...JSON.parse(fs.readFileSync(example, 'utf8')),
        runDir, steps, precision, evalEvery: 0, checkpointEvery: 0, logEvery: 1,
        schedule: { kind: 'cosine', warmupSteps: 5, minLr: 0.0002 },
      }), 'pretrain');
      const result = await pretrain(stage, { progress: null });
      expect(result.status).toBe('completed');
      expect(matmulPrecision()).toBe('f32');
      return { losses: result.losses, recs: readMetrics(path.join(runDir, 'metrics.jsonl')) };
    };
    const f32 = await run('f32');
    const fp16 = await run('fp16');
    expect(fp16.losses.length).toBe(steps);
    expect(f32.losses[0]! - f32.losses[steps - 1]!).toBeGreaterThan(1.5);
    const worst = Math.max(...f32.losses.map((l, i) => Math.abs(l - fp16.losses[i]!)));
    expect(worst).toBeLessThan(0.05);
    const last = (xs: number[]) => xs.slice(-5).reduce((a, b) => a + b, 0) / 5;
    expect(Math.abs(last(fp16.losses) - last(f32.losses)) / last(f32.losses)).toBeLessThan(0.01);
    expect(fp16.losses.some((l, i) => l !== f32.losses[i])).toBe(true); // f16 rounding reached the matmuls
    expect(fp16.recs[0]!.lossScale).toBe(65536);
    expect(f32.recs[0]!.lossScale).toBeUndefined();
  }, 600_000);
});

describe('lossScale in a stage config', () => {
  it('reaches the trainer: at fp16 a scale of 2^60 overflows the f16 gradients, each step is skipped and halves it', async () => {
    const runDir = path.join(root, 'tiny-stage-scale');
    const stage = stageOfKind(validateStageConfig({
      ...JSON.parse(fs.readFileSync(example, 'utf8')),
      runDir, steps: 6, precision: 'fp16', lossScale: { initialScale: 2 ** 60 }, schedule: { kind: 'constant' }, evalEvery: 0, checkpointEvery: 0, logEvery: 1,
    }), 'pretrain');
    const result = await pretrain(stage, { progress: null });
    expect(result.status).toBe('completed');
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl'));
    const steps = recs.filter((r) => r.loss !== undefined);
    expect(steps.map((r) => [r.step, r.skipped, r.lossScale])).toEqual([1, 2, 3, 4, 5, 6].map((s) => [s, 1, 2 ** (61 - s)]));
  }, 300_000);
});
