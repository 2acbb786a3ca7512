// `patentgpt pretrain` of a sparse mixture of experts, killed with kill -9 after a checkpoint and
// resumed: the loss sequence, the weights and the optimizer state equal the uninterrupted run's
// bit for bit (the fused MoE path is deterministic: a counting sort, per-expert GEMMs, gathers;
// the router jitter's noise position is in router_state.json).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exited, sha, trainLosses, waitFor } from './child-run.js';

const repo = new URL('../../', import.meta.url).pathname;
const main = path.join(repo, 'src/cli/main.ts');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-resume-moe-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const args = (...a: string[]): string[] => ['--import', 'tsx', main, 'pretrain', ...a];
const cli = (...a: string[]) => spawnSync(process.execPath, args(...a), { encoding: 'utf8', cwd: repo });
const start = (...a: string[]): ChildProcess => spawn(process.execPath, args(...a), { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });

describe('patentgpt pretrain of an SMoE model', () => {
  it('resumes after kill -9 with exactly the loss sequence, weights and optimizer state of an uninterrupted run', async () => {
    const cfg = path.join(root, 'moe.json');
    fs.writeFileSync(cfg, JSON.stringify({
      name: 'moe-resume',
      model: {
        vocabSize: 259, dim: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 48, maxSeqLen: 32,
        numExperts: 4, topK: 2, routerAuxLossCoef: 0.02, routerZLossCoef: 0.001, routerJitter: 0.05, // jitter: its noise position is checkpointed
      },
      tokenizer: 'byte',
      data: { sample: true, valFraction: 0.05 },
      seqLen: 32, batchSize: 4, gradAccum: 2, steps: 24,
      optimizer: { lr: 0.003 }, schedule: { kind: 'cosine', warmupSteps: 4 },
      evalEvery: 8, evalBatches: 1, checkpointEvery: 4, keepCheckpoints: 2, seed: 5, threads: 1,
    }));
    const ref = path.join(root, 'ref');
    const r0 = cli('--config', cfg, '--run-dir', ref, '--quiet');
    expect(r0.status, r0.stderr).toBe(0);
    const full = trainLosses(ref);
    expect(full).toHaveLength(24);

    const runDir = path.join(root, 'killed');
    const child = start('--config', cfg, '--run-dir', runDir, '--quiet');
    const done = exited(child);
    await waitFor(() => fs.existsSync(path.join(runDir, 'checkpoints', 'step-8')), child, 'checkpoint step-8');
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(runDir, 'checkpoints', 'step-24'))).toBe(false);

    const r1 = cli('--config', cfg, '--run-dir', runDir);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stdout).toMatch(/resuming from .*step-(8|12|16|20)/);
    expect(trainLosses(runDir)).toEqual(full); // bit-exact, step for step
    for (const f of ['model.safetensors', 'optimizer.safetensors'])
      expect(sha(path.join(runDir, 'checkpoints', 'step-24', f)), f).toBe(sha(path.join(ref, 'checkpoints', 'step-24', f)));
  }, 60_000);
});
