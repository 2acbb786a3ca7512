// The data-parallel engine for a model on CUDA: gradients averaged by NCCL on the device
// (GradientBuckets' NCCL path), the step's numbers summed over MPI when the job was launched with it
// (mpirun, srun) or else over NCCL itself (torchrun-style launches, bootstrapped by the TCP
// rendezvous). ZeRO over NCCL is not wired yet: stage 0 only.
import { PatentGPTError } from '../errors.js';
import { Tensor, setNumThreads } from '../tensor/index.js';
import type { DataParallelEngine } from '../train/trainer.js';
import { GradientBuckets, type BucketStats } from './ddp.js';
import { gpuForRank, rankFromEnv, threadsPerRank, type RankInfo } from './env.js';
import { MpiCommunicator } from './mpi.js';
import { NcclCommunicator, requireNccl } from './nccl.js';

export class NcclDataParallel implements DataParallelEngine {
  readonly nccl: NcclCommunicator;
  readonly mpi: MpiCommunicator | null;
  readonly info: RankInfo;
  buckets: GradientBuckets | null = null;

  constructor(nccl: NcclCommunicator, info: RankInfo, mpi: MpiCommunicator | null = null) {
    this.nccl = nccl;
    this.mpi = mpi;
    this.info = info;
  }

  get rank(): number {
    return this.nccl.rank;
  }
  get worldSize(): number {
    return this.nccl.size;
  }

  attach(params: readonly (readonly [string, Tensor])[]): void {
    this.buckets = new GradientBuckets(params.map(([, p]) => p), this.nccl);
  }

  beforeLastBackward(): void {
    this.buckets!.arm();
  }

  reduceGradients(): void {
    this.buckets!.finish();
  }

  /**
   * float64 sums: over MPI when there is one; over NCCL (f32 only) as a high and a low f32 part of
   * each value, summed apart and added in float64, which keeps ~48 bits for small world sizes.
   */
  sum(values: number[]): number[] {
    if (this.mpi) return Array.from(this.mpi.allReduce(Float64Array.from(values)));
    if (this.worldSize === 1) return [...values];
    const parts = new Float32Array(values.length * 2);
    values.forEach((v, i) => {
      parts[2 * i] = Math.fround(v);
      parts[2 * i + 1] = Math.fround(v - parts[2 * i]!);
    });
    const t = Tensor.from(parts, [parts.length], { device: 'cuda' });
    try {
      this.nccl.allReduceAsync(t, 'sum');
      this.nccl.synchronize();
      const out = t.toArray() as Float32Array;
      return values.map((_, i) => out[2 * i]! + out[2 * i + 1]!);
    } finally {
      t.dispose();
    }
  }

  barrier(): void {
    if (this.mpi) this.mpi.barrier();
    else if (this.worldSize > 1) this.sum([0]);
  }

  stats(): BucketStats | null {
    return this.buckets ? { ...this.buckets.stats } : null;
  }
}

/**
 * This process as a rank of a data-parallel job whose model is on CUDA (world size 1 included: a
 * one-GPU NCCL communicator): its GPU narrowed to LOCAL_RANK's before CUDA starts, NCCL's unique id
 * exchanged over MPI (`mpi: true`, mpirun/srun launches) or the TCP rendezvous at
 * MASTER_ADDR:MASTER_PORT. Throws E_UNSUPPORTED saying what to install when NCCL is missing.
 */
export async function initNcclDataParallel(opts: { env?: Record<string, string | undefined>; mpi?: boolean; threads?: number; zero?: number } = {}): Promise<NcclDataParallel> {
  const env = opts.env ?? process.env;
  if (opts.zero) throw new PatentGPTError('E_UNSUPPORTED', `data parallel on CUDA: ZeRO-${opts.zero} over NCCL is not wired yet (PATENTGPT_ZERO=0)`);
  requireNccl(); // before MPI or any exchange: a clear E_UNSUPPORTED, not a hang
  const info = rankFromEnv(env);
  const gpu = gpuForRank(info, env);
  if (gpu !== null) process.env.CUDA_VISIBLE_DEVICES = gpu;
  const mpi = opts.mpi ? MpiCommunicator.init() : null;
  const nccl = await NcclCommunicator.init({
    rank: info.rank, worldSize: info.worldSize,
    ...(mpi ? { mpi } : {}),
    ...(info.masterAddr ? { masterAddr: info.masterAddr } : {}),
    ...(info.masterPort ? { masterPort: info.masterPort } : {}),
  });
  if (!opts.threads && info.worldSize > 1) setNumThreads(threadsPerRank(info));
  return new NcclDataParallel(nccl, info, mpi);
}
