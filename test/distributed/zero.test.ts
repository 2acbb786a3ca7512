// ZeRO-1 over MPI with --global-batch: the optimizer state sharded across 2 ranks (each holds about
// half of the moments, measured as the moment tensors it allocated) with the losses, weights and
// consolidated optimizer state of one rank; ZeRO-2 also halves the gradients each rank holds; checkpoints resume on another number of ranks (2 -> 1,
// 1 -> 2) with the losses and weights of the uninterrupted run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { partition } from '../../src/distributed/data-parallel.js';
import { sha, trainLosses } from '../train/child-run.js';
import { cli, mpiMissing, cutBackTo } from './mpi-helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-zero-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const config = path.join(root, 'zero.json');
fs.writeFileSync(config, JSON.stringify({
  name: 'zero', model: { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 160, maxSeqLen: 64 }, tokenizer: 'byte',
  data: { sample: true, weights: { patent: 0.6, law: 0.25, qa: 0.15 }, valFraction: 0.05 },
  seqLen: 64, batchSize: 2, gradAccum: 2, steps: 6, optimizer: { lr: 0.003, gradClip: 1.0 }, schedule: { kind: 'cosine', warmupSteps: 2 },
  evalEvery: 0, checkpointEvery: 3, keepCheckpoints: 3, seed: 3, threads: 1,
}));

const file = (run: string, step: number, name: string): string => path.join(run, 'checkpoints', `step-${step}`, name);
const summaries = (stdout: string): { rank?: number; optimizerStateBytes?: number; status: string; allReduce?: { gradientBytes: number } }[] =>
  stdout.split('\n').filter((l) => l.includes('"event":"summary"')).map((l) => JSON.parse(l) as { status: string });
const one = (run: string) => cli(['pretrain', '--config', config, '--run-dir', run, '--quiet']);
const two = (run: string, ...flags: string[]) => cli(['launch', '--nproc', '2', ...flags, '--global-batch', '--', 'pretrain', '--config', config, '--run-dir', run, '--quiet']);

describe('ZeRO-1 partition', () => {
  it('gives whole parameters, largest first, to the least loaded rank', () => {
    const p = partition([['a', 10], ['b', 6], ['c', 5], ['d', 1]], 2);
    expect([...p.entries()].sort()).toEqual([['a', 0], ['b', 1], ['c', 1], ['d', 0]]);
  });
});

describe.skipIf(mpiMissing !== null)('ZeRO-1 and ZeRO-2 over 2 MPI ranks', () => {
  const ref = path.join(root, 'ref');
  const sums: { z0?: ReturnType<typeof summaries> } = {};
  it('shards the optimizer state (~1/2 per rank) with the losses, weights and optimizer file of one rank', async () => {
    const [r1, rz, r0] = await Promise.all([one(ref), two(path.join(root, 'z1'), '--zero', '1'), two(path.join(root, 'z0'))]);
    for (const r of [r1, rz, r0]) expect(r.code, r.stderr + r.stdout).toBe(0);
    sums.z0 = summaries(r0.stdout);
    const z1 = summaries(rz.stdout);
    const z0 = summaries(r0.stdout);
    expect(z1.map((s) => s.rank).sort()).toEqual([0, 1]);
    const full = z0[0]!.optimizerStateBytes!; // no ZeRO: every rank holds all the moments
    expect(z0[1]!.optimizerStateBytes).toBe(full);
    expect(z1[0]!.optimizerStateBytes! + z1[1]!.optimizerStateBytes!).toBe(full);
    for (const s of z1) expect(s.optimizerStateBytes! / full).toBeGreaterThan(0.45), expect(s.optimizerStateBytes! / full).toBeLessThan(0.55);
    expect(trainLosses(path.join(root, 'z1'))).toEqual(trainLosses(ref));
    expect(sha(file(path.join(root, 'z1'), 6, 'model.safetensors'))).toBe(sha(file(ref, 6, 'model.safetensors')));
    // the checkpoint holds the whole (consolidated) optimizer state
    expect(sha(file(path.join(root, 'z1'), 6, 'optimizer.safetensors'))).toBe(sha(file(ref, 6, 'optimizer.safetensors')));
  });

  it('ZeRO-2 also shards the gradients (~1/2 per rank after the reduce-scatter), with the losses of one rank', async () => {
    const run = path.join(root, 'z2');
    const r = await two(run, '--zero', '2', '--bucket-mb', '0.05');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const z2 = summaries(r.stdout);
    const full = sums.z0![0]!.allReduce!.gradientBytes; // ZeRO-0: every rank holds every gradient
    expect(sums.z0![1]!.allReduce!.gradientBytes).toBe(full);
    expect(z2[0]!.allReduce!.gradientBytes + z2[1]!.allReduce!.gradientBytes).toBe(full);
    for (const x of z2) expect(x.allReduce!.gradientBytes / full).toBeGreaterThan(0.45), expect(x.allReduce!.gradientBytes / full).toBeLessThan(0.55);
    expect(z2[0]!.optimizerStateBytes! + z2[1]!.optimizerStateBytes!).toBe(sums.z0![0]!.optimizerStateBytes);
    // the clip norm is a sum over the ranks' shares: equal within rounding
    const a = trainLosses(ref);
    trainLosses(run).forEach((x, i) => expect(Math.abs(x - a[i]!), `step ${i + 1}`).toBeLessThanOrEqual(1e-6));
  });

  it('resumes a 2-rank ZeRO run on 1 rank, and a 1-rank run on 2 ZeRO ranks, with the uninterrupted losses and weights', async () => {
    const a = path.join(root, 'two-to-one');
    const b = path.join(root, 'one-to-two');
    const [ra, rb] = await Promise.all([two(a, '--zero', '1'), one(b)]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    cutBackTo(a, 3);
    cutBackTo(b, 3);
    const [ra2, rb2] = await Promise.all([one(a), two(b, '--zero', '1')]);
    expect(ra2.code, ra2.stderr).toBe(0);
    expect(rb2.code, rb2.stderr + rb2.stdout).toBe(0);
    for (const run of [a, b]) {
      expect(trainLosses(run)).toEqual(trainLosses(ref));
      expect(sha(file(run, 6, 'model.safetensors'))).toBe(sha(file(ref, 6, 'model.safetensors')));
      expect(JSON.parse(fs.readFileSync(file(run, 6, 'state.json'), 'utf8')).tokensSeen).toBe(6 * 4 * 64);
    }
    expect(fs.readFileSync(path.join(a, 'metrics.jsonl'), 'utf8')).toMatch(/"step":4/);
  });
});
