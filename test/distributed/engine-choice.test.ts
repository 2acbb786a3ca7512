// Which engine a rank of a stage run uses (src/distributed/engine-choice.ts) and how `patentgpt
// launch` starts the ranks (src/cli/launch.ts): a torchrun-style launch of a CUDA stage takes NCCL
// over the TCP rendezvous and never MPI; a torchrun-style CPU stage without MPI is refused with what
// to do; mpirun/srun launches keep MPI. Then the CLI itself on this machine (no GPU): a
// torchrun-style 2-rank launch of a CUDA config fails in each rank with the config's "no CUDA
// device" error (not MPI's, not a hang), and a torchrun-style CPU rank without MPI says MPI is needed.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseEngine, launchedByMpi } from '../../src/distributed/engine-choice.js';
import { rankFromEnv } from '../../src/distributed/env.js';
import { availableDevices } from '../../src/native/devices.js';
import { commandDevice, launchBackend, torchrunCommandLines } from '../../src/cli/launch.js';

const torchrun = { RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500' };

describe('chooseEngine', () => {
  it('torchrun-style CUDA without MPI: NCCL over the rendezvous at MASTER_ADDR:MASTER_PORT', () => {
    expect(chooseEngine(rankFromEnv(torchrun), 'cuda', torchrun)).toEqual({ engine: 'nccl', masterAddr: '127.0.0.1', masterPort: 29500 });
  });
  it('torchrun-style CPU without MPI: E_UNSUPPORTED saying CPU collectives need MPI and how to launch', () => {
    expect(() => chooseEngine(rankFromEnv(torchrun), 'cpu', torchrun)).toThrow(expect.objectContaining({
      code: 'E_UNSUPPORTED',
      message: expect.stringMatching(/^rank 1 of 2: .*reduced over MPI.*patentgpt launch --nproc N.*mpirun -np N/),
    }));
  });
  it('torchrun-style CUDA without MASTER_ADDR/MASTER_PORT: E_CONFIG naming them', () => {
    const env = { RANK: '0', WORLD_SIZE: '2' };
    expect(() => chooseEngine(rankFromEnv(env), 'cuda', env)).toThrow(expect.objectContaining({ code: 'E_CONFIG', message: expect.stringMatching(/MASTER_ADDR and MASTER_PORT/) }));
  });
  it('MPI launches (Open MPI, MPICH, Slurm, Kubernetes) keep MPI on either device; one rank: none', () => {
    const ompi = { OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2' };
    expect(chooseEngine(rankFromEnv(ompi), 'cuda', ompi)).toEqual({ engine: 'mpi' });
    expect(chooseEngine(rankFromEnv(ompi), 'cpu', ompi)).toEqual({ engine: 'mpi' });
    // torchrun's variables under mpirun (exported by a job script): still an MPI job
    const both = { ...torchrun, OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '2' };
    expect(chooseEngine(rankFromEnv(both), 'cpu', both)).toEqual({ engine: 'mpi' });
    const hydra = { ...torchrun, PMI_RANK: '1', PMI_SIZE: '2' };
    expect(launchedByMpi(hydra)).toBe(true);
    expect(chooseEngine(rankFromEnv(hydra), 'cuda', hydra)).toEqual({ engine: 'mpi' });
    const slurm = { SLURM_PROCID: '1', SLURM_STEP_NUM_TASKS: '2' };
    expect(chooseEngine(rankFromEnv(slurm), 'cpu', slurm)).toEqual({ engine: 'mpi' });
    expect(chooseEngine(rankFromEnv({}), 'cuda', {})).toEqual({ engine: 'none' });
    expect(chooseEngine(rankFromEnv({ RANK: '0', WORLD_SIZE: '1' }), 'cpu', {})).toEqual({ engine: 'none' });
  });
});

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-engine-choice-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function config(name: string, device: 'cpu' | 'cuda'): string {
  const file = path.join(root, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    name, device, model: { vocabSize: 259, dim: 32, nLayers: 1, nHeads: 2, nKvHeads: 1, ffnDim: 64, maxSeqLen: 32 }, tokenizer: 'byte',
    data: { sample: true, weights: { patent: 1 }, valFraction: 0.05 }, seqLen: 32, batchSize: 2, gradAccum: 1, steps: 2,
    optimizer: { lr: 0.001 }, evalEvery: 0, checkpointEvery: 0, seed: 1, threads: 1,
  }));
  return file;
}

describe('launch: the backend by the config\'s device', () => {
  it('a CUDA config launches torchrun-style (nccl), a CPU one under mpirun; --backend overrides', () => {
    const cuda = config('dev-cuda', 'cuda');
    const cpu = config('dev-cpu', 'cpu');
    expect(commandDevice(['pretrain', '--config', cuda])).toBe('cuda');
    expect(commandDevice(['pretrain', `--config=${cuda}`])).toBe('cuda');
    expect(commandDevice(['pretrain', '--config', cpu])).toBe('cpu');
    expect(commandDevice(['pretrain', '--config', path.join(root, 'missing.json')])).toBe('cpu');
    expect(launchBackend(['pretrain', '--config', cuda], {})).toBe('nccl');
    expect(launchBackend(['pretrain', '--config', cpu], {})).toBe('mpi');
    expect(launchBackend(['pretrain', '--config', cpu], { backend: 'nccl' })).toBe('nccl');
  });
  it('torchrun-style ranks: RANK/WORLD_SIZE/LOCAL_RANK and the rendezvous, the launch options, no MPI launcher variables', () => {
    const old = process.env.OMPI_COMM_WORLD_SIZE;
    process.env.OMPI_COMM_WORLD_SIZE = '4';
    try {
      const lines = torchrunCommandLines(['pretrain', '--config', 'c.json'], { nproc: 2, zero: 2, timeout: 30 }, 4242, { node: '/bin/node', execArgv: ['--import', 'tsx'], script: 'main.ts' });
      expect(lines.map((l) => [l.command, ...l.args])).toEqual([0, 1].map(() => ['/bin/node', '--import', 'tsx', 'main.ts', 'pretrain', '--config', 'c.json']));
      lines.forEach((l, r) => {
        expect(l.env).toMatchObject({ RANK: String(r), WORLD_SIZE: '2', LOCAL_RANK: String(r), LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '4242', PATENTGPT_ZERO: '2', PATENTGPT_DIST_TIMEOUT: '30' });
        expect(l.env.OMPI_COMM_WORLD_SIZE).toBeUndefined();
        expect(chooseEngine(rankFromEnv(l.env), 'cuda', l.env).engine).toBe('nccl');
      });
    } finally {
      if (old === undefined) delete process.env.OMPI_COMM_WORLD_SIZE;
      else process.env.OMPI_COMM_WORLD_SIZE = old;
    }
  });
});

const repo = new URL('../../', import.meta.url).pathname;
const mainTs = path.join(repo, 'src/cli/main.ts');

/** `patentgpt <args>`, killed after limitMs (a hang shows as timedOut). */
function cli(args: string[], env: NodeJS.ProcessEnv, limitMs: number): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', mainTs, ...args], { cwd: repo, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch { /* gone */ }
    }, limitMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

const hasCuda = (() => {
  try {
    return availableDevices().includes('cuda');
  } catch {
    return false;
  }
})();

describe('the CLI without a GPU or MPI on the launch path', () => {
  // Needs a machine without a usable GPU (the ranks must fail); on a GPU machine nccl-check runs real ranks.
  it.skipIf(hasCuda)(`launch --nproc 2 of a CUDA config: torchrun-style ranks (mpirun never run), each failing with the no-CUDA-device error, no hang${hasCuda ? ' (skipped: this machine has a GPU)' : ''}`, async () => {
    const cfg = config('launch-cuda', 'cuda');
    const r = await cli(['launch', '--nproc', '2', '--mpirun', '/nonexistent/mpirun', '--', 'pretrain', '--config', cfg, '--quiet'], {}, 120_000);
    expect(r.timedOut).toBe(false);
    expect(r.code).not.toBe(0);
    for (const rank of [0, 1]) expect(r.stderr).toMatch(new RegExp(`\\[rank ${rank}\\] .*"cuda" cannot be used here`));
    expect(r.stderr).not.toMatch(/mpirun is not available|MPI says/);
    expect(r.stderr).toMatch(/patentgpt launch: rank [01] ended with code 1/);
  }, 130_000);

  it('a torchrun-style CPU rank without MPI: the clear "MPI is needed" error, before any MPI is loaded', async () => {
    const cfg = config('torchrun-cpu', 'cpu');
    const r = await cli(['pretrain', '--config', cfg, '--quiet'], { RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1' }, 60_000);
    expect(r.timedOut).toBe(false);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rank 1 of 2: this stage runs on the CPU, whose gradients are reduced over MPI/);
    expect(r.stderr).toMatch(/patentgpt launch --nproc N/);
  }, 70_000);
});
