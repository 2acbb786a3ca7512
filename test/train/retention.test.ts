// Checkpoint retention and corrupt run folders (issue 13, hardening): pruning keeps the newest
// checkpoints that verify (a corrupt one never counts toward keepCheckpoints, the only good one
// is never removed), and a run folder whose checkpoints all fail to verify is refused, naming the
// folder, instead of silently starting over and emptying metrics.jsonl, unless asked to.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { CheckpointManager, type TrainState } from '../../src/train/checkpoint.js';
import { Tensor, matmul, scale, sum } from '../../src/tensor/index.js';
import { readMetrics } from '../../src/train/metrics.js';
import { Trainer, findResumePoint, type TrainTask } from '../../src/train/trainer.js';
import { vectorTaskState } from './task-state.js';

let run: string;
beforeEach(() => {
  run = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-retain-'));
});
afterEach(() => fs.rmSync(run, { recursive: true, force: true }));

const state = (step: number): TrainState => ({ step, tokensSeen: step, data: { step }, configHash: 'h' });
const file = (step: number) => [{ name: 'w.bin', content: Buffer.from(`weights ${step}`.repeat(50)) }];
const corrupt = (mgr: CheckpointManager, step: number): void => {
  const f = path.join(mgr.stepDir(step), 'w.bin');
  const b = fs.readFileSync(f);
  b[0] = b[0]! ^ 0xff;
  fs.writeFileSync(f, b);
};

describe('retention', () => {
  it('a corrupt checkpoint does not count toward keep: the newest verified ones stay', async () => {
    const w = new CheckpointManager(run, { keep: 0 });
    for (const s of [10, 20, 30]) await w.save(state(s), file(s));
    corrupt(w, 30);
    // a new run (a fresh manager) keeps 2: step-40 and the newest good before it, step-20
    const mgr = new CheckpointManager(run, { keep: 2 });
    await mgr.save(state(40), file(40));
    expect(mgr.steps()).toEqual([20, 40]);
    expect((await mgr.latest())!.step).toBe(40);
  });

  it('never removes the only good checkpoint to keep corrupt newer ones', async () => {
    const w = new CheckpointManager(run, { keep: 0 });
    for (const s of [10, 20, 30]) await w.save(state(s), file(s));
    corrupt(w, 20);
    corrupt(w, 30);
    const mgr = new CheckpointManager(run, { keep: 1 });
    await mgr.prune();
    expect(mgr.steps()).toEqual([10, 20, 30]); // nothing newer verifies: step-10 is the only good one, kept
    expect((await mgr.latest())!.step).toBe(10);
    // nothing is removed while no checkpoint verifies at all
    corrupt(w, 10);
    await mgr.prune();
    expect(mgr.steps()).toEqual([10, 20, 30]);
  });
});

/** loss = -sum(w): every step moves each weight up by lr. */
function task(): TrainTask<{ tokens: Int32Array }> {
  const w = Tensor.from(new Float32Array(2), [2], { requiresGrad: true });
  const pos = { value: 0 };
  return {
    parameters: () => [['w', w]],
    nextBatch: () => (pos.value++, { tokens: new Int32Array(4) }),
    loss: () => ({ loss: scale(sum(matmul(w.reshape([1, 2]), Tensor.full([2, 1], 1))), -1) }),
    ...vectorTaskState(w, pos),
  };
}
const opts = { totalSteps: 6, schedule: { kind: 'constant' as const, lr: 0.1, warmupSteps: 0 }, configHash: 'h', progress: null, checkpointEvery: 2, keepCheckpoints: 0 };

describe('a run folder whose checkpoints all fail to verify', () => {
  it('is refused, naming the folder, and metrics.jsonl is left as it was; restartFromScratch starts over and keeps the old log', async () => {
    await new Trainer(task(), { ...opts, runDir: run }).run();
    const mgr = new CheckpointManager(run);
    for (const s of mgr.steps()) corrupt(mgr, s);
    const log = path.join(run, 'metrics.jsonl');
    const before = fs.readFileSync(log, 'utf8');
    expect(readMetrics(log)).toHaveLength(6);

    const err = await new Trainer(task(), { ...opts, runDir: run }).run().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(PatentGPTError);
    expect((err as PatentGPTError).code).toBe('E_CHECKPOINT');
    expect((err as Error).message).toContain(`${path.join(run, 'checkpoints')}: none of its 3 checkpoints verifies`);
    expect((err as Error).message).toMatch(/--restart-from-scratch/);
    expect(fs.readFileSync(log, 'utf8')).toBe(before);
    await expect(findResumePoint({ runDir: run, configHash: 'h' })).rejects.toThrow(/none of its 3 checkpoints verifies/);

    const r = await new Trainer(task(), { ...opts, runDir: run, restartFromScratch: true }).run();
    expect(r).toMatchObject({ status: 'completed', step: 6 });
    expect(r.resumedFrom).toBeUndefined();
    expect(fs.readFileSync(`${log}.before-restart`, 'utf8')).toBe(before);
    expect(readMetrics(log).filter((x) => x.loss !== undefined).map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await new CheckpointManager(run).latest())!.step).toBe(6);
  });

  it('an empty run folder or one with no checkpoints yet starts fresh as before', async () => {
    expect(await findResumePoint({ runDir: path.join(run, 'none'), configHash: 'h' })).toBeNull();
    const r = await new Trainer(task(), { ...opts, runDir: run }).run();
    expect(r.status).toBe('completed');
  });
});
