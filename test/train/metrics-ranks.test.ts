// Task metrics on N data-parallel ranks: the loop sums each metric's sum and count over the ranks
// (after the ranks agree on the names), so metrics.jsonl has the global batch's means, and the
// tokens count is the ranks' summed tokens. Ranks that report other names never call mismatched
// sums: they keep their own means and the loop warns once. The 2-rank MPI runs of every stage
// (test/distributed/global-batch-stages.test.ts, ppo-data-parallel.test.ts) check the end result;
// here the agreement itself, and the loop against a scripted engine.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Tensor, add, matmul, scale, sum } from '../../src/tensor/index.js';
import { MetricMeans, readMetrics, type MetricRecord, type StepMetrics } from '../../src/train/metrics.js';
import { Trainer, type DataParallelEngine, type TrainTask } from '../../src/train/trainer.js';
import { vectorTaskState } from './task-state.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-metrics-ranks-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Each simulated rank's MetricMeans after adding its micro-batches' metrics. */
function ranks(...perRank: StepMetrics[][]): MetricMeans[] {
  return perRank.map((micro) => {
    const m = new MetricMeans();
    for (const x of micro) m.add(x);
    return m;
  });
}

const sumOf = (arrays: number[][]): number[] => arrays.reduce((a, b) => a.map((x, i) => x + b[i]!));

/** Every rank's verdict on its signature against the sum over the ranks. */
function verdicts(means: MetricMeans[]): boolean[] {
  const sigs = means.map((m) => m.nameSignature());
  const sums = sumOf(sigs);
  return sigs.map((s) => MetricMeans.sameNamesOnAllRanks(s, sums, means.length));
}

describe('MetricMeans across ranks', () => {
  it('ranks with the same names (in any order) agree, and the summed totals give the means over all their micro-batches', () => {
    const micro: StepMetrics[] = [
      { kl: 0.25, reward: 1, perExpert: { 0: 3, 1: 5 } },
      { reward: 2, kl: 0.5, perExpert: { 1: 7, 0: 1 } },
      { kl: 0.125, reward: 4, perExpert: { 0: 2, 1: 2 } },
      { perExpert: { 0: 8, 1: 1 }, reward: -3, kl: 1 },
    ];
    const [a, b] = ranks([micro[0]!, micro[2]!], [micro[1]!, micro[3]!]);
    expect(verdicts([a!, b!])).toEqual([true, true]);
    const totals = sumOf([a!.totals(), b!.totals()]);
    for (const m of [a!, b!]) m.setTotals(totals);
    const one = ranks(micro)[0]!;
    const rec = (m: MetricMeans): MetricRecord => {
      const r: MetricRecord = { step: 1 };
      m.writeTo(r);
      return r;
    };
    expect(rec(a!)).toEqual(rec(one));
    expect(rec(b!)).toEqual(rec(one));
  });

  it('ranks with other names, other record keys or other counts all disagree, every one of them', () => {
    expect(verdicts(ranks([{ a: 1 }], [{ a: 1, b: 2 }]))).toEqual([false, false]);
    expect(verdicts(ranks([{ a: 1 }], [{ b: 1 }]))).toEqual([false, false]); // same count, other name
    expect(verdicts(ranks([{ r: { 0: 1 } }], [{ r: { 1: 1 } }]))).toEqual([false, false]);
    expect(verdicts(ranks([{ a: 1 }], [{ a: 1 }], [{ a: 1 }, {}], [{}]))).toEqual([false, false, false, false]);
    expect(verdicts(ranks([], []))).toEqual([true, true]); // nothing reported anywhere: nothing to sum
  });

  it('a name reported in an earlier step but not in this one does not count', () => {
    const [a, b] = ranks([{ x: 1, y: 2 }], [{ x: 3 }]);
    a!.clear();
    a!.add({ x: 5 });
    expect(verdicts([a!, b!])).toEqual([true, true]);
  });
});

interface ToyBatch {
  tokens: Int32Array;
  x: Float32Array;
}

/** A toy task whose micro-batches have 4, 5 or 6 tokens and report `metric` (rank 0 of two). */
function toyTask(metrics: StepMetrics): TrainTask<ToyBatch> {
  const n = 4;
  const w = Tensor.from(Float32Array.from({ length: n }, (_, i) => Math.cos(i)), [n], { requiresGrad: true });
  const pos = { value: 0 };
  return {
    parameters: () => [['w', w]],
    nextBatch: () => {
      const k = pos.value++;
      return { tokens: new Int32Array(4 + (k % 3)), x: Float32Array.from({ length: n }, (_, i) => Math.sin(k + i)) };
    },
    loss: (b) => {
      const ww = sum(matmul(w.reshape([1, n]), w.reshape([n, 1])));
      const wx = sum(matmul(w.reshape([1, n]), Tensor.from(b.x.map((v) => -v), [n, 1])));
      return { loss: add(scale(ww, 0.5), wx), metrics };
    },
    ...vectorTaskState(w, pos),
  };
}

/**
 * A scripted engine for rank 0 of 2: the other rank's share of each sum is `other(values)`. The
 * step's sum is [loss, stop, tokens, ...signature]; a sum of 2k values is a metrics total.
 */
function scriptedEngine(other: (values: number[]) => number[]): DataParallelEngine & { calls: number[][] } {
  const calls: number[][] = [];
  return {
    calls,
    attach: () => undefined,
    beforeLastBackward: () => undefined,
    reduceGradients: () => undefined,
    barrier: () => undefined,
    sum: (values) => {
      calls.push([...values]);
      const o = other(values);
      return values.map((v, i) => v + o[i]!);
    },
  };
}

const steps = (runDir: string): MetricRecord[] => readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => r.loss !== undefined);
const base = { totalSteps: 3, gradAccum: 2, schedule: { kind: 'constant' as const, lr: 0.01, warmupSteps: 0, totalSteps: 3 }, configHash: 'toy', progress: null, rank: 0, worldSize: 2 };

describe('Trainer on 2 ranks: task metrics and tokens summed over the ranks', () => {
  it('logs the means over both ranks\' micro-batches and their summed tokens', async () => {
    // the other rank: the same names, 7 tokens a micro-batch, its micro-batches report score 3 (rank 0's: 1)
    const dp = scriptedEngine((v) => v.length === 9 ? [v[0]!, 0, 14, ...v.slice(3)] : v.map((x, i) => (i % 2 === 0 ? 3 * v[i + 1]! : x)));
    const runDir = path.join(root, 'agree');
    await new Trainer(toyTask({ score: 1 }), { ...base, runDir, dataParallel: dp }).run();
    const recs = steps(runDir);
    expect(recs.map((r) => r.score)).toEqual([2, 2, 2]);
    // rank 0's micro-batches: 4+5, 6+4, 5+6 tokens; the other rank's 14 a step
    expect(recs.map((r) => r.tokens)).toEqual([9 + 14, 9 + 14 + 10 + 14, 9 + 14 + 10 + 14 + 11 + 14]);
    expect(dp.calls.filter((c) => c.length === 2)).toHaveLength(3); // one total per step
  });

  it('evaluation metrics too: val.* are the means over both ranks\' evaluation batches', async () => {
    // the evaluation's sum is [loss sum, targets, ...signature] (8 values); the other rank's batches report score 5
    const dp = scriptedEngine((v) => v.length >= 8 ? v : v.map((x, i) => (i % 2 === 0 ? 5 * v[i + 1]! : x)));
    const runDir = path.join(root, 'eval');
    const task = toyTask({ score: 1 });
    task.evalBatches = function* (count: number) {
      for (let i = 0; i < count; i++) yield { tokens: new Int32Array(4), x: Float32Array.from({ length: 4 }, (_, j) => Math.cos(i + j)) };
    };
    await new Trainer(task, { ...base, runDir, dataParallel: dp, evalBatches: 2 }).run();
    const evals = readMetrics(path.join(runDir, 'metrics.jsonl')).filter((r) => r.valLoss !== undefined);
    expect(evals.map((r) => r['val.score'])).toEqual([3]);
  });

  it('ranks that report other names keep their own means, never call a mismatched sum, and warn once', async () => {
    const elsewhere = new MetricMeans();
    elsewhere.add({ score: 1, extra: 2 });
    const theirs = elsewhere.nameSignature();
    const dp = scriptedEngine((v) => v.length === 9 ? [v[0]!, 0, v[2]!, ...theirs] : v.map(() => 0));
    const errors = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const runDir = path.join(root, 'disagree');
      await new Trainer(toyTask({ score: 1 }), { ...base, runDir, dataParallel: dp }).run();
      expect(steps(runDir).map((r) => r.score)).toEqual([1, 1, 1]);
      expect(dp.calls.every((c) => c.length === 9)).toBe(true); // only the step sums: no metrics total
      const warnings = errors.mock.calls.map((c) => String(c[0])).filter((s) => s.includes('metric names'));
      expect(warnings).toHaveLength(1);
    } finally {
      errors.mockRestore();
    }
  });
});
