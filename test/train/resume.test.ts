// The pieces compose into an exact resume: a toy training run over packed batches, killed after a
// checkpoint (data position + optimizer state + weights), continues with the same updates and the
// same losses as the uninterrupted run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchStream, type StreamPosition } from '../../src/data/packing.js';
import { ShardSet, writeShards } from '../../src/data/shards.js';
import { Tensor, matmul, sum } from '../../src/tensor/index.js';
import { CheckpointManager } from '../../src/train/checkpoint.js';
import { AdamW } from '../../src/train/optimizer.js';
import { learningRate, type Schedule } from '../../src/train/schedule.js';

let dir: string;
let set: ShardSet;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-resume-'));
  const docs = Array.from({ length: 30 }, (_, i) => ({ ids: Array.from({ length: 5 + (i % 9) }, (_, j) => (i * 13 + j * 7) % 97), category: i % 2 ? 'a' : 'b' }));
  await writeShards(path.join(dir, 'tok'), docs, { vocabSize: 97 });
  set = await ShardSet.open(path.join(dir, 'tok'));
});
afterAll(() => {
  set.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const sched: Schedule = { kind: 'cosine', lr: 0.05, warmupSteps: 3, totalSteps: 20, minLr: 0.005 };
const streamOpts = { batchSize: 2, seqLen: 8, seed: 9, weights: { a: 1, b: 1 } };

/** A toy loss w . x_b whose gradient (x_b, the batch's token histogram) depends on the batch. */
function trainSteps(w: Tensor, opt: AdamW, stream: BatchStream, from: number, to: number): number[] {
  const losses: number[] = [];
  for (let step = from; step < to; step++) {
    const b = stream.next();
    const x = new Float32Array(w.size);
    for (const t of b.tokens) x[t % w.size]! += 1 / b.tokens.length;
    const xt = Tensor.from(x, [w.size, 1]);
    const loss = sum(matmul(w.reshape([1, w.size]), xt));
    losses.push(loss.item());
    loss.backward();
    opt.step(learningRate(sched, step));
    opt.zeroGrad();
  }
  return losses;
}

describe('resume', () => {
  it('a run resumed from a checkpoint repeats the uninterrupted run exactly', async () => {
    const init = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i));
    // uninterrupted
    const w0 = Tensor.from(init, [16], { requiresGrad: true });
    const full = trainSteps(w0, new AdamW([['w', w0]]), new BatchStream([set], streamOpts), 0, 20);
    // interrupted at step 12
    const w1 = Tensor.from(init, [16], { requiresGrad: true });
    const opt1 = new AdamW([['w', w1]]);
    const s1 = new BatchStream([set], streamOpts);
    const first = trainSteps(w1, opt1, s1, 0, 12);
    const mgr = new CheckpointManager(path.join(dir, 'run'));
    const weights = Buffer.from((w1.toArray() as Float32Array).buffer);
    await mgr.save({ step: 12, tokensSeen: 12 * 16, data: s1.position(), configHash: 'x' }, [{ name: 'weights.bin', content: weights }], opt1.exportState());
    // "kill -9": a fresh process state rebuilt from the checkpoint only
    const ck = (await mgr.latest())!;
    const buf = await ck.read('weights.bin');
    const w2 = Tensor.from(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4).slice(), [16], { requiresGrad: true });
    const opt2 = new AdamW([['w', w2]]);
    opt2.loadState((await ck.readOptimizer())!);
    const s2 = new BatchStream([set], streamOpts, JSON.parse(JSON.stringify(ck.state.data)) as StreamPosition);
    const rest = trainSteps(w2, opt2, s2, ck.state.step, 20);
    expect([...first, ...rest]).toEqual(full);
    expect([...w2.toArray()]).toEqual([...w0.toArray()]);
  });
});
