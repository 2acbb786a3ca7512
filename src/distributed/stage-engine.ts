// The data-parallel engine of a stage run from the command line (src/cli/stage-run.ts): chosen by
// engine-choice.ts from the launch and the stage's device, made once per process.
//   MPI (mpirun, srun, `patentgpt launch` of a CPU stage): initDataParallel, as before.
//   torchrun-style CUDA launch without MPI (`patentgpt launch` of a CUDA stage, torchrun, a
//     Kubernetes pod set): NCCL over the TCP rendezvous at MASTER_ADDR:MASTER_PORT; MPI is never
//     loaded; each rank's GPU is LOCAL_RANK's (pinGpu, before anything starts CUDA).
import { chooseEngine } from './engine-choice.js';
import { gpuForRank, rankFromEnv } from './env.js';
import { initDataParallel, type MpiDataParallel } from './data-parallel.js';
import { initNcclDataParallel, type NcclDataParallel } from './nccl-data-parallel.js';

export type StageEngine = MpiDataParallel | NcclDataParallel;

type Env = Record<string, string | undefined>;

/**
 * Narrows CUDA_VISIBLE_DEVICES to this rank's GPU (LOCAL_RANK's) under a multi-rank launch. Call it
 * before anything asks the addon about devices (a config's device check starts CUDA); idempotent.
 */
export function pinGpu(env: Env = process.env): void {
  const info = rankFromEnv(env);
  if (info.worldSize === 1) return;
  const gpu = gpuForRank(info, env);
  if (gpu !== null) process.env.CUDA_VISIBLE_DEVICES = gpu;
}

let made: { engine: StageEngine | null } | null = null;

/** This process's engine for a stage on `device` (null: one rank); made once, then the same. */
export async function initStageDataParallel(device: 'cpu' | 'cuda', env: Env = process.env): Promise<StageEngine | null> {
  if (made) return made.engine;
  const choice = chooseEngine(rankFromEnv(env), device, env);
  const engine = choice.engine === 'none' ? null : choice.engine === 'mpi' ? initDataParallel({ env }) : await initNcclDataParallel({ env });
  if (engine && choice.engine === 'nccl') {
    // Freed when the run ended well (a failing rank exits at once: its peers time out or are stopped by the launcher).
    const nccl = (engine as NcclDataParallel).nccl;
    process.once('exit', (code) => {
      if (code === 0) nccl.close();
    });
  }
  made = { engine };
  return engine;
}

/** The engine initStageDataParallel made, or undefined before it ran. */
export function stageDataParallel(): StageEngine | null | undefined {
  return made?.engine;
}
