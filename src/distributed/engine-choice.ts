// Which collective engine a rank of a stage run uses, from how it was launched and where its
// tensors live. Plain logic over the launcher's variables (env.ts), so it is tested without MPI,
// NCCL or a GPU:
//   one rank                         -> none
//   started by mpirun / srun / an MPI launcher (its variables present), or a Slurm or Kubernetes
//     launch                         -> MPI (a CUDA model's gradients then go through NCCL, its id
//                                       broadcast over MPI: MpiDataParallel)
//   torchrun-style (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) without MPI:
//     CUDA tensors                   -> NCCL bootstrapped by the TCP rendezvous; MPI is never loaded
//     CPU tensors                    -> an error: CPU collectives are MPI's, and this job has no MPI
import { PatentGPTError } from '../errors.js';
import type { RankInfo } from './env.js';

export type EngineChoice =
  | { engine: 'none' }
  | { engine: 'mpi' }
  | { engine: 'nccl'; masterAddr: string; masterPort: number };

type Env = Record<string, string | undefined>;

/** Whether an MPI launcher started this process (Open MPI, MPICH/Hydra and Intel MPI, PMIx). */
export function launchedByMpi(env: Env): boolean {
  return ['OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'PMIX_RANK', 'MPI_LOCALNRANKS'].some((v) => env[v] !== undefined && env[v] !== '');
}

/** The engine of a stage run whose tensors live on `device`; throws when the launch cannot serve it. */
export function chooseEngine(info: RankInfo, device: 'cpu' | 'cuda', env: Env): EngineChoice {
  if (info.worldSize === 1) return { engine: 'none' };
  if (info.source !== 'torchrun' || launchedByMpi(env)) return { engine: 'mpi' };
  const who = `rank ${info.rank} of ${info.worldSize}`;
  if (device === 'cpu')
    throw new PatentGPTError('E_UNSUPPORTED',
      `${who}: this stage runs on the CPU, whose gradients are reduced over MPI (NCCL reduces CUDA tensors only), and this ` +
        'torchrun-style launch (RANK/WORLD_SIZE, no mpirun) has no MPI job. Launch CPU ranks with MPI: ' +
        '`patentgpt launch --nproc N -- <command> ...`, `mpirun -np N patentgpt <command> ...` or srun under Slurm ' +
        '(install MPI: apt-get install openmpi-bin libopenmpi-dev, then scripts/build-mpi.sh); or set device: "cuda" to use NCCL');
  if (!info.masterAddr || !info.masterPort)
    throw new PatentGPTError('E_CONFIG',
      `${who}: a torchrun-style launch of a CUDA stage needs MASTER_ADDR and MASTER_PORT (rank 0's address and a free port), ` +
        "where the ranks exchange NCCL's id");
  return { engine: 'nccl', masterAddr: info.masterAddr, masterPort: info.masterPort };
}
