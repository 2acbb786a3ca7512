// The trainer loop on toy tasks (fast): gradient accumulation, metrics and evaluation records,
// checkpoints kept, stop and exact resume in-process, config-hash and data-parallel guards.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, add, matmul, scale, sum } from '../../src/tensor/index.js';
import { readMetrics } from '../../src/train/metrics.js';
import { Trainer, type TrainTask } from '../../src/train/trainer.js';
import { vectorTaskState } from './task-state.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-trainer-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface ToyBatch {
  tokens: Int32Array;
  x: Float32Array;
}

/**
 * A toy task: loss = 0.5 w.w - w.x_b (gradient w - x_b), so the gradient depends on
 * the batch; batches are a deterministic function of a counter (the data position).
 */
function toyTask(n = 8, init?: Float32Array): Omit<TrainTask<ToyBatch>, 'nextBatch'> & { nextBatch: () => ToyBatch; w: Tensor; batchesRead: () => number } {
  const w = Tensor.from(init ?? Float32Array.from({ length: n }, (_, i) => Math.cos(i)), [n], { requiresGrad: true });
  const pos = { value: 0 };
  const batch = (k: number): ToyBatch => ({ tokens: new Int32Array(4 + (k % 3)), x: Float32Array.from({ length: n }, (_, i) => Math.sin(k * 0.7 + i)) });
  return {
    w,
    batchesRead: () => pos.value,
    parameters: () => [['w', w]],
    nextBatch: () => batch(pos.value++),
    loss: (b) => {
      const row = w.reshape([1, n]);
      const ww = sum(matmul(row, w.reshape([n, 1])));
      const wx = sum(matmul(row, Tensor.from(b.x.map((v) => -v), [n, 1])));
      return { loss: add(scale(ww, 0.5), wx) };
    },
    evalBatches: function* (count: number) {
      for (let i = 0; i < count; i++) yield batch(1000 + i);
    },
    ...vectorTaskState(w, pos),
  };
}

const sched = { kind: 'cosine' as const, lr: 0.05, warmupSteps: 2, totalSteps: 12, minLr: 0.005 };
const base = { totalSteps: 12, schedule: sched, configHash: 'toy', progress: null, optimizer: { weightDecay: 0, maxGradNorm: 1 } };

describe('Trainer', () => {
  it('logs loss, lr, grad norm, throughput and MFU, evaluates, checkpoints, keeps the last N and draws the report', async () => {
    const runDir = path.join(root, 'full');
    const task = toyTask();
    const seen: number[] = [];
    const r = await new Trainer(task, {
      ...base, runDir, evalEvery: 4, evalBatches: 3, checkpointEvery: 3, keepCheckpoints: 2, flopsPerToken: 100, peakFlops: 1e9,
      onMetrics: (m) => seen.push(m.step),
    }).run();
    expect(r.status).toBe('completed');
    expect(r.step).toBe(12);
    expect(r.losses).toHaveLength(12);
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl'));
    const train = recs.filter((x) => x.loss !== undefined);
    expect(train.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(train.map((x) => x.loss)).toEqual(r.losses);
    for (const k of ['lr', 'gradNorm', 'tokens', 'elapsedSec']) expect(typeof train[5]![k]).toBe('number');
    expect(train[5]!.tokensPerSec).toBeGreaterThan(0);
    expect(train[5]!.mfu).toBeCloseTo((100 * train[5]!.tokensPerSec!) / 1e9, 4);
    expect(train[0]!.lr).toBeCloseTo(0.025, 10); // warmup: lr / 2 on the first update
    const evals = recs.filter((x) => x.valLoss !== undefined);
    expect(evals.map((x) => x.step)).toEqual([4, 8, 12]);
    expect(evals[0]!.valPerplexity).toBeCloseTo(Math.exp(evals[0]!.valLoss!), 6);
    expect(fs.readdirSync(path.join(runDir, 'checkpoints')).sort()).toEqual(['step-12', 'step-9']);
    expect(fs.readFileSync(path.join(runDir, 'report.svg'), 'utf8')).toMatch(/<svg[^>]*>[\s\S]*loss/);
    expect(seen.length).toBe(recs.length);
  });

  it('stops on an abort with a checkpoint, and the resumed run repeats the uninterrupted one exactly', async () => {
    const full = await new Trainer(toyTask(), { ...base, runDir: path.join(root, 'ref'), checkpointEvery: 0 }).run();
    const runDir = path.join(root, 'stopped');
    const ac = new AbortController();
    const first = await new Trainer(toyTask(), {
      ...base, runDir, checkpointEvery: 5,
      signal: ac.signal,
      onMetrics: (m) => {
        if (m.step === 7) ac.abort();
      },
    }).run();
    expect(first.status).toBe('interrupted');
    expect(first.step).toBe(7);
    expect(fs.existsSync(path.join(runDir, 'checkpoints', 'step-7', 'state.json'))).toBe(true);
    const task = toyTask(8, new Float32Array(8)); // different weights: the checkpoint must win
    const second = await new Trainer(task, { ...base, runDir, checkpointEvery: 5 }).run();
    expect(second.resumedFrom).toBe(7);
    expect([...first.losses, ...second.losses]).toEqual(full.losses);
    const losses = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.loss !== undefined).map((x) => x.loss);
    expect(losses).toEqual(full.losses);
    expect(task.batchesRead()).toBe(12);
  });

  it('accumulates gradients: gradAccum 2 takes the step of the mean loss of two batches', async () => {
    const a = toyTask();
    await new Trainer(a, { ...base, totalSteps: 1, runDir: path.join(root, 'ga'), gradAccum: 2, schedule: { kind: 'constant', lr: 0.1, warmupSteps: 0 } }).run();
    // by hand: the gradient of 0.5 (loss(b0) + loss(b1)) is w - (x0 + x1) / 2; AdamW's first step moves each weight by lr * sign(g)
    const w0 = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i));
    const b = toyTask();
    const x0 = b.nextBatch().x;
    const x1 = b.nextBatch().x;
    const got = a.w.toArray() as Float32Array;
    const norm = Math.hypot(...w0.map((w, i) => w - (x0[i]! + x1[i]!) / 2));
    expect(norm).toBeGreaterThan(1); // clipped, which does not change a first Adam step's direction
    for (let i = 0; i < 8; i++) {
      const g = w0[i]! - (x0[i]! + x1[i]!) / 2;
      expect(got[i]!).toBeCloseTo(w0[i]! - 0.1 * Math.sign(g), 4);
    }
    expect(a.batchesRead()).toBe(2);
  });

  it('passes over a corrupt newest checkpoint and resumes from the one before', async () => {
    const runDir = path.join(root, 'corrupt');
    const full = await new Trainer(toyTask(), { ...base, runDir, checkpointEvery: 4, keepCheckpoints: 0 }).run();
    const f = path.join(runDir, 'checkpoints', 'step-12', 'w.bin');
    const bytes = fs.readFileSync(f);
    bytes[3]! ^= 0xff;
    fs.writeFileSync(f, bytes);
    const lines: string[] = [];
    const again = await new Trainer(toyTask(), {
      ...base, runDir, checkpointEvery: 4, keepCheckpoints: 0, progress: { write: (c: string) => lines.push(c), isTTY: false },
    }).run();
    expect(lines.join('')).toMatch(/skipped a checkpoint that does not verify: .*step-12: .*w\.bin: sha256 mismatch/);
    expect(again.resumedFrom).toBe(8);
    expect(again.losses).toEqual(full.losses.slice(8));
  });

  it('refuses to resume a run folder of another config, names the file', async () => {
    const runDir = path.join(root, 'full');
    await expect(new Trainer(toyTask(), { ...base, runDir, configHash: 'other' }).run()).rejects.toThrow(/step-12\/state\.json: configHash: toy differs from this config's other/);
  });

  it('data parallel: calls the all-reduce hook after backward on each step; rank 1 writes nothing', async () => {
    expect(() => new Trainer(toyTask(), { ...base, runDir: path.join(root, 'dp0'), worldSize: 2 })).toThrow(/allReduce/);
    const calls: number[] = [];
    const runDir = path.join(root, 'dp1');
    const r = await new Trainer(toyTask(), {
      ...base, runDir, totalSteps: 3, rank: 1, worldSize: 2,
      allReduce: (grads, step) => {
        expect(grads).toHaveLength(1);
        expect(grads[0]!.shape).toEqual([8]);
        calls.push(step);
      },
    }).run();
    expect(calls).toEqual([0, 1, 2]);
    expect(r.checkpoint).toBeNull();
    expect(fs.existsSync(path.join(runDir, 'checkpoints'))).toBe(false);
    expect(fs.existsSync(path.join(runDir, 'metrics.jsonl'))).toBe(false);
  });
});
