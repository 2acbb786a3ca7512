// The data-parallel engine over MPI: what the trainer's DataParallelEngine asks (gradient buckets,
// sums of the step's numbers), and setting a process up as one rank of a job: its rank from the
// launcher's variables (env.ts), MPI initialised and checked against them, its kernel threads
// pinned to its share of the cores, MPI finalised when the process ends well.
import { PatentGPTError } from '../errors.js';
import { setNumThreads, type Tensor } from '../tensor/index.js';
import type { DataParallelEngine } from '../train/trainer.js';
import { GradientBuckets, type BucketStats } from './ddp.js';
import { rankFromEnv, threadsPerRank, type RankInfo } from './env.js';
import { MpiCommunicator } from './mpi.js';

export interface DataParallelOptions {
  /** Gradient bucket size in bytes (PATENTGPT_BUCKET_MB, default 25 MB as DDP's). */
  bucketBytes?: number;
  /** Start buckets during backward (PATENTGPT_DP_OVERLAP=0 turns it off). Default true. */
  overlap?: boolean;
}

export class MpiDataParallel implements DataParallelEngine {
  readonly comm: MpiCommunicator;
  readonly info: RankInfo;
  readonly opts: DataParallelOptions;
  buckets: GradientBuckets | null = null;

  constructor(comm: MpiCommunicator, info: RankInfo, opts: DataParallelOptions = {}) {
    this.comm = comm;
    this.info = info;
    this.opts = opts;
  }

  get rank(): number {
    return this.comm.rank;
  }
  get worldSize(): number {
    return this.comm.size;
  }

  attach(params: readonly Tensor[]): void {
    this.buckets = new GradientBuckets(params, this.comm, this.opts);
  }

  beforeLastBackward(): void {
    this.buckets!.arm();
  }

  reduceGradients(): void {
    this.buckets!.finish();
  }

  sum(values: number[]): number[] {
    return Array.from(this.comm.allReduce(Float64Array.from(values)));
  }

  barrier(): void {
    this.comm.barrier();
  }

  /** Gradient all-reduce figures so far (comm time, time blocked, buckets overlapped). */
  stats(): BucketStats | null {
    return this.buckets ? { ...this.buckets.stats } : null;
  }
}

function envOptions(env: Record<string, string | undefined>): DataParallelOptions {
  const o: DataParallelOptions = {};
  if (env.PATENTGPT_BUCKET_MB) {
    const mb = Number(env.PATENTGPT_BUCKET_MB);
    if (!(mb > 0)) throw new PatentGPTError('E_CONFIG', `PATENTGPT_BUCKET_MB=${env.PATENTGPT_BUCKET_MB}: must be a number of megabytes > 0`);
    o.bucketBytes = mb * 1024 * 1024;
  }
  if (env.PATENTGPT_DP_OVERLAP === '0') o.overlap = false;
  return o;
}

let current: MpiDataParallel | null = null;

/**
 * This process as a rank of a data-parallel job, or null when the launcher's variables say one
 * rank. Initialises MPI (once), checks that MPI sees the same rank and size as the variables,
 * pins the kernel threads to this rank's share of the machine's cores (unless `threads` is set),
 * and finalises MPI when the process exits with code 0 (a failing rank exits without it, and the
 * launcher then stops the others).
 */
export function initDataParallel(opts: { env?: Record<string, string | undefined>; threads?: number } = {}): MpiDataParallel | null {
  if (current) return current;
  const env = opts.env ?? process.env;
  const info = rankFromEnv(env);
  if (info.worldSize === 1) return null;
  const comm = MpiCommunicator.init();
  if (comm.size !== info.worldSize || comm.rank !== info.rank)
    throw new PatentGPTError('E_CONFIG',
      `the ${info.source} variables say rank ${info.rank} of ${info.worldSize}, MPI says rank ${comm.rank} of ${comm.size}: ` +
        'start the ranks with mpirun or srun (or `patentgpt launch`), which give MPI and the variables the same job');
  if (!opts.threads) setNumThreads(threadsPerRank(info));
  current = new MpiDataParallel(comm, info, envOptions(env));
  process.once('exit', (code) => {
    if (code === 0) comm.close();
  });
  return current;
}
