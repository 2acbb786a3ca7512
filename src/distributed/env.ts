// Where this process sits in a data-parallel job, read from the variables the launchers set:
//   torchrun / torch.distributed.run, and anything that mimics it: RANK, WORLD_SIZE, LOCAL_RANK,
//     LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   Open MPI's mpirun (what `patentgpt launch` runs on CPU): OMPI_COMM_WORLD_RANK, _SIZE,
//     _LOCAL_RANK, _LOCAL_SIZE
//   Slurm's srun: SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE (only
//     inside an srun step: a batch script's own process has SLURM_PROCID 0 and the allocation's
//     SLURM_NTASKS, and stays one rank)
//   Kubernetes indexed Jobs: JOB_COMPLETION_INDEX, with WORLD_SIZE (or PATENTGPT_WORLD_SIZE) from
//     the Job's spec (completions), since Kubernetes itself does not pass the count (without it,
//     an indexed Job's pod is one rank: a sweep, not a data-parallel job)
// The first that is present wins, in that order (torchrun's variables are explicit; mpirun inside a
// Slurm allocation sets both its own and Slurm's). No variable at all: one rank.
import * as os from 'node:os';
import { PatentGPTError } from '../errors.js';

export type LaunchSource = 'torchrun' | 'openmpi' | 'slurm' | 'kubernetes' | 'single';

export interface RankInfo {
  rank: number;
  worldSize: number;
  /** Rank on this machine (the GPU index it takes; the slice of cores its threads use). */
  localRank: number;
  /** Ranks on this machine. */
  localWorldSize: number;
  source: LaunchSource;
  /** torchrun's rendezvous address and port, when given (the NCCL bootstrap). */
  masterAddr?: string;
  masterPort?: number;
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, min: number, source: string): number {
  const v = env[name];
  const n = Number(v);
  if (v === undefined || v.trim() === '' || !Number.isSafeInteger(n) || n < min)
    throw new PatentGPTError('E_CONFIG', `${name}=${JSON.stringify(v ?? '')}: must be an integer >= ${min} (${source} launch)`);
  return n;
}

const optInt = (env: Env, name: string, min: number, source: string): number | undefined =>
  env[name] === undefined || env[name] === '' ? undefined : int(env, name, min, source);

/** Slurm's SLURM_STEP_TASKS_PER_NODE is "4" or "4(x2)" or "4,2": the tasks of this node when uniform. */
function slurmLocalSize(env: Env): number | undefined {
  const m = /^(\d+)/.exec(env.SLURM_STEP_TASKS_PER_NODE ?? '');
  return m ? Number(m[1]) : undefined;
}

/** This process's rank, the world size and the local rank, from the launcher's variables. */
export function rankFromEnv(env: Env = process.env): RankInfo {
  let info: RankInfo;
  if (env.RANK !== undefined && env.WORLD_SIZE !== undefined) {
    const s = 'torchrun-style';
    const worldSize = int(env, 'WORLD_SIZE', 1, s);
    const rank = int(env, 'RANK', 0, s);
    const localRank = optInt(env, 'LOCAL_RANK', 0, s) ?? rank;
    info = { rank, worldSize, localRank, localWorldSize: optInt(env, 'LOCAL_WORLD_SIZE', 1, s) ?? worldSize, source: 'torchrun' };
    if (env.MASTER_ADDR) info.masterAddr = env.MASTER_ADDR;
    const port = optInt(env, 'MASTER_PORT', 1, s);
    if (port !== undefined) info.masterPort = port;
  } else if (env.OMPI_COMM_WORLD_RANK !== undefined) {
    const s = 'Open MPI';
    const rank = int(env, 'OMPI_COMM_WORLD_RANK', 0, s);
    const worldSize = int(env, 'OMPI_COMM_WORLD_SIZE', 1, s);
    info = {
      rank, worldSize, source: 'openmpi',
      localRank: optInt(env, 'OMPI_COMM_WORLD_LOCAL_RANK', 0, s) ?? rank,
      localWorldSize: optInt(env, 'OMPI_COMM_WORLD_LOCAL_SIZE', 1, s) ?? worldSize,
    };
  } else if (env.SLURM_PROCID !== undefined && env.SLURM_STEP_NUM_TASKS !== undefined) {
    const s = 'Slurm';
    const rank = int(env, 'SLURM_PROCID', 0, s);
    const worldSize = int(env, 'SLURM_STEP_NUM_TASKS', 1, s);
    info = { rank, worldSize, source: 'slurm', localRank: optInt(env, 'SLURM_LOCALID', 0, s) ?? 0, localWorldSize: slurmLocalSize(env) ?? 1 };
  } else if (env.JOB_COMPLETION_INDEX !== undefined && (env.PATENTGPT_WORLD_SIZE ?? env.WORLD_SIZE) !== undefined) {
    const s = 'Kubernetes indexed Job';
    const rank = int(env, 'JOB_COMPLETION_INDEX', 0, s);
    const sizeVar = env.PATENTGPT_WORLD_SIZE !== undefined ? 'PATENTGPT_WORLD_SIZE' : 'WORLD_SIZE';
    // One pod per rank: each pod is its own machine.
    info = { rank, worldSize: int(env, sizeVar, 1, s), source: 'kubernetes', localRank: 0, localWorldSize: 1 };
  } else {
    return { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, source: 'single' };
  }
  if (info.rank >= info.worldSize)
    throw new PatentGPTError('E_CONFIG', `rank ${info.rank} is not below the world size ${info.worldSize} (${info.source} variables)`);
  if (info.localRank >= info.localWorldSize) info.localWorldSize = info.localRank + 1;
  return info;
}

/**
 * Kernel threads for this rank on CPU: the machine's cores divided among the ranks on it (at least
 * one), so N ranks on one machine do not oversubscribe it N times over.
 */
export function threadsPerRank(info: Pick<RankInfo, 'localWorldSize'>, cores = os.availableParallelism()): number {
  return Math.max(1, Math.floor(cores / info.localWorldSize));
}

/**
 * The GPU a rank takes: CUDA_VISIBLE_DEVICES narrowed to the LOCAL_RANK-th visible device (all of
 * them when unset: the index itself), so each rank's "cuda" is its own GPU. Applied before the
 * CUDA runtime starts (initDataParallel runs before any tensor is made); null with one rank per
 * machine or when the launcher already gave each rank one device.
 */
export function gpuForRank(info: Pick<RankInfo, 'localRank' | 'localWorldSize'>, env: Record<string, string | undefined> = process.env): string | null {
  if (info.localWorldSize <= 1) return null;
  const visible = env.CUDA_VISIBLE_DEVICES?.split(',').map((s) => s.trim()).filter(Boolean);
  if (!visible) return String(info.localRank);
  if (visible.length === 1) return null;
  return visible[info.localRank % visible.length]!;
}
