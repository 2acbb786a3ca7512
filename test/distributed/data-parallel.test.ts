// Data parallel training with 2 real MPI ranks (`patentgpt launch --nproc 2`) against one rank with
// the same global batch (gradAccum 2 x batchSize on one rank = batchSize on each of 2 ranks): the
// same loss at every step (within 1e-6; in practice bit-identical, since the gradients' mean over
// 2 ranks is exactly the 1/2-scaled accumulation) and the same final weights, for pretrain and SFT.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha, trainLosses } from '../train/child-run.js';
import { writeAlpaca, writeClaimPairs, writeInit } from '../train/sft-fixtures.js';
import { cli, mpiMissing } from './mpi-helpers.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-dp-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function pretrainConfig(name: string, gradAccum: number, extra: Record<string, unknown> = {}): string {
  const file = path.join(root, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    name, model: { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 160, maxSeqLen: 64 }, tokenizer: 'byte',
    data: { sample: true, weights: { patent: 0.6, law: 0.25, qa: 0.15 }, valFraction: 0.05 },
    seqLen: 64, batchSize: 2, gradAccum, steps: 6, optimizer: { lr: 0.003, gradClip: 1.0 }, schedule: { kind: 'cosine', warmupSteps: 2 },
    evalEvery: 3, evalBatches: 2, checkpointEvery: 3, keepCheckpoints: 2, seed: 3, threads: 1, ...extra,
  }));
  return file;
}

function sftConfig(name: string, gradAccum: number): string {
  const file = path.join(root, `${name}.json`);
  const init = path.join(root, 'init');
  fs.writeFileSync(file, JSON.stringify({
    kind: 'sft', name, model: init, tokenizer: 'byte', init, data: { sources: ['reverse.jsonl'], valFraction: 0.1 },
    seqLen: 128, batchSize: 2, gradAccum, steps: 4, optimizer: { lr: 0.003 }, schedule: { kind: 'cosine', warmupSteps: 1 },
    evalEvery: 2, evalBatches: 2, checkpointEvery: 0, seed: 4, threads: 1,
  }));
  return file;
}

const weights = (runDir: string, step: number): string => sha(path.join(runDir, 'checkpoints', `step-${step}`, 'model.safetensors'));
const valLosses = (runDir: string): number[] =>
  fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { valLoss?: number }).filter((r) => r.valLoss !== undefined).map((r) => r.valLoss!);

function expectSameRun(one: string, two: string, steps: number): void {
  const a = trainLosses(one);
  const b = trainLosses(two);
  expect(a).toHaveLength(steps);
  expect(b).toHaveLength(steps);
  a.forEach((x, i) => expect(Math.abs(x - b[i]!), `step ${i + 1}: ${x} vs ${b[i]}`).toBeLessThanOrEqual(1e-6));
  const va = valLosses(one);
  expect(va.length).toBeGreaterThan(0);
  valLosses(two).forEach((x, i) => expect(Math.abs(x - va[i]!)).toBeLessThanOrEqual(1e-6));
  expect(weights(two, steps)).toBe(weights(one, steps));
}

beforeAll(async () => {
  if (mpiMissing !== null) return;
  writeAlpaca(path.join(root, 'reverse.jsonl'));
  await writeInit(path.join(root, 'init'));
});

describe.skipIf(mpiMissing !== null)('data parallel over MPI: 2 ranks = 1 rank with the same global batch', () => {

  it('pretrain: same losses, validation losses and final weights; rank 0 alone writes', async () => {
    const one = path.join(root, 'pt-1');
    const two = path.join(root, 'pt-2');
    const [r1, r2] = await Promise.all([
      cli(['pretrain', '--config', pretrainConfig('pt1', 2), '--run-dir', one, '--quiet']),
      // 0.05 MB buckets: several per step, started during backward (the embedding's, tied or not, checked)
      cli(['launch', '--nproc', '2', '--bucket-mb', '0.05', '--', 'pretrain', '--config', pretrainConfig('pt2', 1), '--run-dir', two, '--quiet']),
    ]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    expectSameRun(one, two, 6);
    const ranks = r2.stdout.split('\n').filter((l) => l.includes('"allReduce"')).map((l) => JSON.parse(l) as { rank: number; allReduce: { overlappedBuckets: number; buckets: number } });
    expect(ranks.map((x) => x.rank).sort()).toEqual([0, 1]);
    for (const x of ranks) expect(x.allReduce.overlappedBuckets).toBeGreaterThan(x.allReduce.buckets / 2); // most buckets went during backward
    // tokens count the global batch: 6 steps x 2 ranks x 2 rows x 64
    expect(JSON.parse(fs.readFileSync(path.join(two, 'checkpoints', 'step-6', 'state.json'), 'utf8')).tokensSeen).toBe(6 * 2 * 2 * 64);
    expect(fs.readdirSync(path.join(two, 'checkpoints')).sort()).toEqual(['step-3', 'step-6']);
  });

  it('pretrain of an SMoE with tied embeddings, small buckets during backward: same losses', async () => {
    const model = { vocabSize: 259, dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 96, maxSeqLen: 64, numExperts: 4, topK: 2, tieEmbeddings: true };
    const one = path.join(root, 'moe-1');
    const two = path.join(root, 'moe-2');
    const [r1, r2] = await Promise.all([
      cli(['pretrain', '--config', pretrainConfig('moe1', 2, { model, steps: 4, evalEvery: 0, checkpointEvery: 0 }), '--run-dir', one, '--quiet']),
      cli(['launch', '--nproc', '2', '--bucket-mb', '0.05', '--', 'pretrain', '--config', pretrainConfig('moe2', 1, { model, steps: 4, evalEvery: 0, checkpointEvery: 0 }), '--run-dir', two, '--quiet']),
    ]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    // The tied embedding gets its gradient in two parts (output head, then input), summed in
    // another order than on one rank: equal within float rounding, not bit for bit.
    const a = trainLosses(one);
    trainLosses(two).forEach((x, i) => expect(Math.abs(x - a[i]!)).toBeLessThanOrEqual(1e-6));
    expect(a).toHaveLength(4);
  });

  it('sft: same losses and final weights', async () => {
    const one = path.join(root, 'sft-1');
    const two = path.join(root, 'sft-2');
    const [r1, r2] = await Promise.all([
      cli(['sft', '--config', sftConfig('sft1', 2), '--run-dir', one, '--quiet']),
      cli(['launch', '--nproc', '2', '--', 'sft', '--config', sftConfig('sft2', 1), '--run-dir', two, '--quiet']),
    ]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r2.code, r2.stderr + r2.stdout).toBe(0);
    expectSameRun(one, two, 4);
  });
});

/** The pids of the ranks mpirun started under `launcher` (the launch CLI), by OMPI_COMM_WORLD_RANK. */
function rankPids(launcher: number): Map<number, number> {
  const out = new Map<number, number>();
  const children = (pid: number): number[] => {
    try {
      return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  const walk = (pid: number): void => {
    for (const c of children(pid)) {
      try {
        const m = /(?:^|\0)OMPI_COMM_WORLD_RANK=(\d+)/.exec(fs.readFileSync(`/proc/${c}/environ`, 'utf8'));
        if (m) out.set(Number(m[1]), c);
      } catch {
        /* gone */
      }
      walk(c);
    }
  };
  walk(launcher);
  return out;
}

function pairConfig(kind: 'reward' | 'dpo', name: string, gradAccum: number): string {
  const file = path.join(root, `${name}.json`);
  const init = path.join(root, 'init');
  const pairs = path.join(root, 'pairs.jsonl');
  if (!fs.existsSync(pairs))
    writeClaimPairs(pairs, 32);
  fs.writeFileSync(file, JSON.stringify({
    kind, name, model: init, init, tokenizer: 'byte', data: { sources: [pairs], shuffle: true }, seqLen: 96, batchSize: 2, gradAccum, steps: 3,
    optimizer: { lr: 0.002, weightDecay: 0 }, schedule: { kind: 'constant' }, evalEvery: 0, checkpointEvery: 0, seed: 2, threads: 1,
    ...(kind === 'dpo' ? { lora: { r: 4, alpha: 8, targetModules: 'all-linear' }, dpo: { beta: 0.5 } } : {}),
  }));
  return file;
}

describe.skipIf(mpiMissing !== null)('data parallel over MPI: reward and DPO on 2 ranks', () => {
  for (const kind of ['reward', 'dpo'] as const)
    it(`${kind}: the losses of 1 rank with the same global batch`, async () => {
      const one = path.join(root, `${kind}-1`);
      const two = path.join(root, `${kind}-2`);
      const [r1, r2] = await Promise.all([
        cli([kind, '--config', pairConfig(kind, `${kind}1`, 2), '--run-dir', one, '--quiet']),
        cli(['launch', '--nproc', '2', '--', kind, '--config', pairConfig(kind, `${kind}2`, 1), '--run-dir', two, '--quiet']),
      ]);
      expect(r1.code, r1.stderr).toBe(0);
      expect(r2.code, r2.stderr + r2.stdout).toBe(0);
      const a = trainLosses(one);
      const b = trainLosses(two);
      expect(a).toHaveLength(3);
      a.forEach((x, i) => expect(Math.abs(x - b[i]!), `step ${i + 1}: ${x} vs ${b[i]}`).toBeLessThanOrEqual(1e-6));
    });
});

describe.skipIf(mpiMissing !== null)('data parallel: a rank that dies', () => {
  it('stops the job with a non-zero exit; the same launch again resumes from the last checkpoint with the uninterrupted losses', async () => {
    const ref = path.join(root, 'fault-ref');
    const run = path.join(root, 'fault');
    const cfg = pretrainConfig('fault', 1, { steps: 8, checkpointEvery: 2, evalEvery: 0 });
    const r0 = await cli(['launch', '--nproc', '2', '--', 'pretrain', '--config', cfg, '--run-dir', ref, '--quiet']);
    expect(r0.code, r0.stderr).toBe(0);

    const { spawn } = await import('node:child_process');
    const { mainTs, mpiEnv, repo } = await import('./mpi-helpers.js');
    const child = spawn(process.execPath, ['--import', 'tsx', mainTs, 'launch', '--nproc', '2', '--timeout', '20', '--', 'pretrain', '--config', cfg, '--run-dir', run, '--quiet'],
      { cwd: repo, env: mpiEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const ck = path.join(run, 'checkpoints', 'step-4');
    const t0 = Date.now();
    while (!fs.existsSync(ck) && Date.now() - t0 < 90_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    expect(fs.existsSync(ck), stderr).toBe(true);
    const pids = rankPids(child.pid!);
    expect([...pids.keys()].sort()).toEqual([0, 1]);
    const killedAt = Date.now();
    process.kill(pids.get(1)!, 'SIGKILL');
    const code = await exit;
    expect(code).not.toBe(0);
    expect(Date.now() - killedAt).toBeLessThan(20_000); // within the collectives' timeout
    expect(stderr).toMatch(/run the same launch again to resume/);
    expect(stderr).toMatch(/process rank 1 .*signal 9/); // mpirun names the rank that died
    // every checkpoint left verifies (rank 0 writes them atomically)
    const { loadCheckpoint } = await import('../../src/train/checkpoint.js');
    const dirs = fs.readdirSync(path.join(run, 'checkpoints'));
    expect(dirs.every((d) => /^step-\d+$/.test(d))).toBe(true);
    for (const d of dirs) await loadCheckpoint(path.join(run, 'checkpoints', d));

    const again = await cli(['launch', '--nproc', '2', '--', 'pretrain', '--config', cfg, '--run-dir', run, '--quiet']);
    expect(again.code, again.stderr).toBe(0);
    expect(trainLosses(run)).toEqual(trainLosses(ref));
    expect(weights(run, 8)).toBe(weights(ref, 8));
  });
});

describe.skipIf(mpiMissing !== null)('data parallel: Ctrl-C', () => {
  it('stops every rank at the same step with a (ZeRO) checkpoint, exit 130, and the same launch resumes to the uninterrupted losses', async () => {
    const ref = path.join(root, 'int-ref');
    const run = path.join(root, 'int');
    const cfg = pretrainConfig('int', 2, { steps: 30, checkpointEvery: 4, evalEvery: 0 });
    const launch = ['launch', '--nproc', '2', '--zero', '1', '--global-batch', '--', 'pretrain', '--config', cfg, '--quiet'];
    const { spawn } = await import('node:child_process');
    const { mainTs, mpiEnv, repo } = await import('./mpi-helpers.js');
    const child = spawn(process.execPath, ['--import', 'tsx', mainTs, ...launch, '--run-dir', run], { cwd: repo, env: mpiEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exit = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    const r0 = await cli(['pretrain', '--config', cfg, '--run-dir', ref, '--quiet']); // meanwhile, the reference on 1 rank
    expect(r0.code, r0.stderr).toBe(0);
    const t0 = Date.now();
    while (!fs.existsSync(path.join(run, 'checkpoints', 'step-4')) && Date.now() - t0 < 90_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    expect(child.exitCode, stderr).toBeNull();
    child.kill('SIGINT');
    expect(await exit, stderr).toBe(130);
    const steps = fs.readdirSync(path.join(run, 'checkpoints')).map((d) => Number(d.slice('step-'.length)));
    const last = Math.max(...steps);
    expect(last).toBeGreaterThan(4); // saved where it stopped, not only at the cadence
    expect(last).toBeLessThan(30);
    const again = await cli([...launch, '--run-dir', run]);
    expect(again.code, again.stderr).toBe(0);
    expect(trainLosses(run)).toEqual(trainLosses(ref));
    expect(weights(run, 30)).toBe(weights(ref, 30));
  });
});
