// Non-finite values in the trainer (issue 13, hardening): a step with a non-finite loss or
// gradient norm is skipped and counted; more than maxNonFiniteSteps in a row stops the run as
// 'diverged' without writing a checkpoint from the bad weights (so the good ones are not pruned
// away), or rolls back to the newest verified checkpoint at a lower learning rate.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, matmul, noGrad, scale, sum } from '../../src/tensor/index.js';
import { readMetrics } from '../../src/train/metrics.js';
import { Trainer, type TrainTask } from '../../src/train/trainer.js';
import { vectorTaskState } from './task-state.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-diverge-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Batch {
  tokens: Int32Array;
  k: number;
}

/**
 * loss = -sum(w) (gradient -1 everywhere), so AdamW moves every weight up by exactly lr per step.
 * `poison(w, k)` makes the loss of batch k NaN (and with it every gradient): a stand-in for a
 * model that blows up.
 */
function linearTask(poison: (w: Float32Array, k: number) => boolean, n = 2): TrainTask<Batch> & { w: Tensor } {
  const w = Tensor.from(new Float32Array(n), [n], { requiresGrad: true });
  const pos = { value: 0 };
  return {
    w,
    parameters: () => [['w', w]],
    nextBatch: () => ({ tokens: new Int32Array(4), k: pos.value++ }),
    loss: (b) => {
      const l = scale(sum(matmul(w.reshape([1, n]), Tensor.full([n, 1], 1))), -1);
      return { loss: poison(w.toArray() as Float32Array, b.k) ? scale(l, Number.NaN) : l };
    },
    ...vectorTaskState(w, pos),
  };
}

const base = {
  totalSteps: 12, schedule: { kind: 'constant' as const, lr: 1, warmupSteps: 0 }, configHash: 'lin', progress: null,
  optimizer: { weightDecay: 0, maxGradNorm: 0 },
};
const ckpts = (runDir: string): string[] => (fs.existsSync(path.join(runDir, 'checkpoints')) ? fs.readdirSync(path.join(runDir, 'checkpoints')).sort() : []);

describe('non-finite steps', () => {
  it('NaN weights: skips and counts the steps, then stops as diverged without a checkpoint from them, keeping the good one', async () => {
    const runDir = path.join(root, 'nan-weights');
    const task = linearTask(() => false);
    const lines: string[] = [];
    const r = await new Trainer(task, {
      ...base, runDir, checkpointEvery: 3, keepCheckpoints: 1, progress: { write: (c: string) => lines.push(c), isTTY: false },
      onMetrics: (m) => {
        if (m.step === 4) noGrad(() => task.w.write(Float32Array.from([Number.NaN, 1])));
      },
    }).run();
    expect(r.status).toBe('diverged');
    expect(r.step).toBe(8); // steps 5, 6, 7 skipped (3 tolerated), the 4th in a row stops the run
    expect(r.nonFiniteSteps).toBe(4);
    expect(r.message).toMatch(/4 consecutive steps with a non-finite loss or gradient norm \(steps 5-8/);
    expect(r.message).toContain(`The last good checkpoint is ${path.join(runDir, 'checkpoints', 'step-3')}`);
    expect(r.message).toMatch(/onDivergence: "rollback"/);
    // step-6 (NaN weights) was never written, so step-3 was not pruned for it
    expect(ckpts(runDir)).toEqual(['step-3']);
    expect(r.checkpoint).toBe(path.join(runDir, 'checkpoints', 'step-3'));
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((x) => x.step > 4);
    expect(recs.map((x) => [x.step, x.skipped])).toEqual([[5, 1], [6, 1], [7, 1], [8, 1]]);
    expect(lines.join('')).toMatch(/diverged: 4 consecutive steps/);
    // the run resumes from the good checkpoint
    const again = await new Trainer(linearTask(() => false), { ...base, runDir, checkpointEvery: 3, keepCheckpoints: 1 }).run();
    expect(again).toMatchObject({ status: 'completed', resumedFrom: 3, nonFiniteSteps: 0 });
  });

  it('a single non-finite step is skipped and counted, weights untouched, and the run completes', async () => {
    const runDir = path.join(root, 'one-bad');
    const task = linearTask((_, k) => k === 4);
    const r = await new Trainer(task, { ...base, runDir, checkpointEvery: 4 }).run();
    expect(r).toMatchObject({ status: 'completed', step: 12, nonFiniteSteps: 1, rollbacks: 0 });
    expect(Number.isNaN(r.losses[4])).toBe(true);
    expect([...(task.w.toArray() as Float32Array)]).toEqual([11, 11]); // 12 steps, one of them skipped
    expect(ckpts(runDir)).toEqual(['step-12', 'step-4', 'step-8']);
  });

  it('ends as diverged, not completed, when the last step is non-finite (and writes no final checkpoint)', async () => {
    const runDir = path.join(root, 'bad-end');
    const r = await new Trainer(linearTask((_, k) => k >= 10), { ...base, runDir, checkpointEvery: 4 }).run();
    expect(r.status).toBe('diverged');
    expect(r.step).toBe(12);
    expect(r.message).toMatch(/the last 2 step\(s\) had a non-finite loss/);
    expect(ckpts(runDir)).toEqual(['step-4', 'step-8']);
  });

  it('onDivergence "rollback": back to the newest verified checkpoint at half the learning rate, then completes', async () => {
    const runDir = path.join(root, 'rollback');
    // NaN once a weight passes 9.7: at lr 1 steps 11 and 12 blow up; from step 8 at lr 0.5 the run ends at 10
    const task = linearTask((w) => w[0]! > 9.7);
    const r = await new Trainer(task, { ...base, runDir, checkpointEvery: 4, keepCheckpoints: 0, maxNonFiniteSteps: 1, onDivergence: 'rollback' }).run();
    expect(r).toMatchObject({ status: 'completed', step: 12, rollbacks: 1, nonFiniteSteps: 2 });
    expect([...(task.w.toArray() as Float32Array)]).toEqual([10, 10]);
    const recs = readMetrics(path.join(runDir, 'metrics.jsonl'));
    expect(recs.find((x) => x.rollback === 1)).toMatchObject({ step: 8, lrScale: 0.5, rolledBackFrom: 12 });
    const train = recs.filter((x) => x.loss !== undefined);
    expect(train.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]); // the log reads like the run that stood
    expect(train.slice(8).map((x) => x.lr)).toEqual([0.5, 0.5, 0.5, 0.5]);
    expect(ckpts(runDir)).toEqual(['step-12', 'step-4', 'step-8']);
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoints', 'step-12', 'state.json'), 'utf8')) as { extra: { lrScale: number } };
    expect(state.extra.lrScale).toBe(0.5); // a resume goes on at the lowered rate
  });

  it('rollback with no checkpoint to go back to, or after maxRollbacks, stops as diverged', async () => {
    const r = await new Trainer(linearTask((_, k) => k >= 1), { ...base, runDir: path.join(root, 'no-ckpt'), checkpointEvery: 4, onDivergence: 'rollback' }).run();
    expect(r.status).toBe('diverged');
    expect(r.message).toMatch(/There is no earlier checkpoint/);
    const r2 = await new Trainer(linearTask((w) => w[0]! > 4.5), {
      ...base, runDir: path.join(root, 'max-rb'), checkpointEvery: 2, maxNonFiniteSteps: 0, onDivergence: 'rollback', maxRollbacks: 2,
    }).run();
    expect(r2).toMatchObject({ status: 'diverged', rollbacks: 2 });
    expect(r2.message).toMatch(/2 rollbacks did not help \(maxRollbacks 2\)/);
  });

  it('never writes a checkpoint from non-finite weights, even when the loss stays finite', async () => {
    const runDir = path.join(root, 'nan-unused');
    const t = linearTask(() => false);
    const other = Tensor.from(new Float32Array(3), [3], { requiresGrad: true }); // trained weights the loss does not read
    const task = { ...t, parameters: () => [['w', t.w], ['other', other]] as [string, Tensor][] };
    const r = await new Trainer(task, {
      ...base, runDir, checkpointEvery: 2, keepCheckpoints: 1,
      onMetrics: (m) => {
        if (m.step === 3) noGrad(() => other.write(Float32Array.from([0, Number.POSITIVE_INFINITY, 0])));
      },
    }).run();
    expect(r.status).toBe('diverged');
    expect(r.step).toBe(4);
    expect(r.nonFiniteSteps).toBe(0);
    expect(r.message).toMatch(/the weights hold non-finite values after step 4; stopped without writing a checkpoint\. The last good checkpoint is .*step-2/);
    expect(ckpts(runDir)).toEqual(['step-2']);
  });

  it('refuses bad divergence options', () => {
    const runDir = path.join(root, 'opts');
    expect(() => new Trainer(linearTask(() => false), { ...base, runDir, maxNonFiniteSteps: -1 })).toThrow(/maxNonFiniteSteps/);
    expect(() => new Trainer(linearTask(() => false), { ...base, runDir, rollbackLrFactor: 2 })).toThrow(/rollbackLrFactor/);
    expect(() => new Trainer(linearTask(() => false), { ...base, runDir, onDivergence: 'retry' as 'stop' })).toThrow(/onDivergence/);
  });
});
