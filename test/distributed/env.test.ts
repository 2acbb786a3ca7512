// Rank, world size and local rank from each launcher's variables, in the order that decides when
// several are set; threads divided among the ranks of one machine; clear errors for bad values.
import { describe, expect, it } from 'vitest';
import { gpuForRank, rankFromEnv, threadsPerRank } from '../../src/distributed/env.js';
import { launchCommandLine } from '../../src/cli/launch.js';

describe('rankFromEnv', () => {
  it('reads torchrun-style variables, with the rendezvous address', () => {
    expect(rankFromEnv({ RANK: '3', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'node0', MASTER_PORT: '29500' })).toEqual({
      rank: 3, worldSize: 8, localRank: 1, localWorldSize: 2, source: 'torchrun', masterAddr: 'node0', masterPort: 29500,
    });
  });
  it('reads Open MPI (mpirun), Slurm (srun) and Kubernetes indexed Jobs', () => {
    expect(rankFromEnv({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2' }))
      .toEqual({ rank: 1, worldSize: 2, localRank: 1, localWorldSize: 2, source: 'openmpi' });
    expect(rankFromEnv({ SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_STEP_NUM_TASKS: '8', SLURM_LOCALID: '1', SLURM_STEP_TASKS_PER_NODE: '4(x2)' }))
      .toEqual({ rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, source: 'slurm' });
    expect(rankFromEnv({ JOB_COMPLETION_INDEX: '2', PATENTGPT_WORLD_SIZE: '4' }))
      .toEqual({ rank: 2, worldSize: 4, localRank: 0, localWorldSize: 1, source: 'kubernetes' });
  });
  it('prefers explicit torchrun variables, then mpirun over the Slurm allocation it runs in; none: one rank', () => {
    expect(rankFromEnv({ RANK: '0', WORLD_SIZE: '2', OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '4' }).source).toBe('torchrun');
    expect(rankFromEnv({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '4', SLURM_PROCID: '0', SLURM_STEP_NUM_TASKS: '1' })).toMatchObject({ source: 'openmpi', rank: 1, worldSize: 4 });
    // a batch script's own process (no srun step) and an indexed Job without a world size: one rank
    expect(rankFromEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '8' }).source).toBe('single');
    expect(rankFromEnv({ JOB_COMPLETION_INDEX: '3' }).source).toBe('single');
    expect(rankFromEnv({})).toEqual({ rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, source: 'single' });
  });
  it('refuses bad values, naming the variable', () => {
    expect(() => rankFromEnv({ RANK: 'x', WORLD_SIZE: '2' })).toThrow(/RANK="x": must be an integer >= 0 \(torchrun-style launch\)/);
    expect(() => rankFromEnv({ RANK: '2', WORLD_SIZE: '2' })).toThrow(/rank 2 is not below the world size 2/);
    expect(() => rankFromEnv({ JOB_COMPLETION_INDEX: '0', PATENTGPT_WORLD_SIZE: 'two' })).toThrow(/PATENTGPT_WORLD_SIZE="two": must be an integer >= 1 \(Kubernetes indexed Job launch\)/);
  });
  it('gives each rank of a machine its GPU (LOCAL_RANK of the visible ones)', () => {
    expect(gpuForRank({ localRank: 1, localWorldSize: 4 }, {})).toBe('1');
    expect(gpuForRank({ localRank: 1, localWorldSize: 2 }, { CUDA_VISIBLE_DEVICES: '4,5' })).toBe('5');
    expect(gpuForRank({ localRank: 0, localWorldSize: 2 }, { CUDA_VISIBLE_DEVICES: '3' })).toBeNull(); // the launcher gave one already
    expect(gpuForRank({ localRank: 0, localWorldSize: 1 }, {})).toBeNull();
  });
  it('divides the cores among the ranks of a machine', () => {
    expect(threadsPerRank({ localWorldSize: 2 }, 16)).toBe(8);
    expect(threadsPerRank({ localWorldSize: 4 }, 2)).toBe(1);
  });
});

describe('launchCommandLine', () => {
  it('runs the command as N ranks under mpirun, unbound, with the launch options as variables', () => {
    const l = launchCommandLine(['pretrain', '--config', 'c.json'], { nproc: 2, timeout: 60, overlap: false }, { node: '/bin/node', execArgv: ['--import', 'tsx'], script: 'main.ts' });
    expect(l.command).toBe('mpirun');
    expect(l.args).toEqual(['-np', '2', '--oversubscribe', '--bind-to', 'none', '/bin/node', '--import', 'tsx', 'main.ts', 'pretrain', '--config', 'c.json']);
    expect(l.env.PATENTGPT_DIST_TIMEOUT).toBe('60');
    expect(l.env.PATENTGPT_DP_OVERLAP).toBe('0');
  });
});
