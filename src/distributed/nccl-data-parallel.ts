// The data-parallel engine for a model on CUDA: gradients averaged by NCCL on the device
// (GradientBuckets' NCCL path: buckets reduced on NCCL's stream during backward), the step's
// numbers summed over MPI when the job was launched with it (mpirun, srun) or else over NCCL itself
// (torchrun-style launches, bootstrapped by the TCP rendezvous). ZeRO-1 and -2 as on MPI
// (data-parallel.ts): the same partition of the parameters; each parameter broadcast from its
// owner after the step and the optimizer state gathered for the checkpoint, over NCCL; ZeRO-2's
// gradients reduced to their owners only.
import { globalGradNorm, setNumThreads, type Tensor } from '../tensor/index.js';
import type { OptimizerState } from '../train/optimizer.js';
import type { DataParallelEngine } from '../train/trainer.js';
import { consolidateShards, envOptions, zeroOwnership, type DataParallelOptions } from './data-parallel.js';
import { GradientBuckets, type BucketStats } from './ddp.js';
import { gpuForRank, rankFromEnv, threadsPerRank, type RankInfo } from './env.js';
import { MpiCommunicator } from './mpi.js';
import { NcclCommunicator, requireNccl } from './nccl.js';

export class NcclDataParallel implements DataParallelEngine {
  readonly nccl: NcclCommunicator;
  readonly mpi: MpiCommunicator | null;
  readonly info: RankInfo;
  readonly opts: DataParallelOptions;
  readonly globalBatch: boolean;
  buckets: GradientBuckets | null = null;
  /** ZeRO-1/2: the rank that owns each parameter (by name). */
  owner: Map<string, number> | null = null;
  owns?: (name: string) => boolean;
  gradNorm?: () => number;
  #named: (readonly [string, Tensor])[] = [];
  #byRank: (readonly [string, Tensor])[][] = [];

  constructor(nccl: NcclCommunicator, info: RankInfo, mpi: MpiCommunicator | null = null, opts: DataParallelOptions = {}) {
    this.nccl = nccl;
    this.mpi = mpi;
    this.info = info;
    this.opts = opts;
    this.globalBatch = opts.globalBatch === true;
  }

  get rank(): number {
    return this.nccl.rank;
  }
  get worldSize(): number {
    return this.nccl.size;
  }

  attach(params: readonly (readonly [string, Tensor])[]): void {
    this.#named = [...params];
    const zero = this.opts.zero ?? 0;
    if (zero >= 1) ({ owner: this.owner, byRank: this.#byRank, owns: this.owns } = zeroOwnership(params, this.worldSize, this.rank));
    const byTensor = new Map(params.map(([n, p]) => [p, this.owner?.get(n) ?? 0]));
    this.buckets = new GradientBuckets(params.map(([, p]) => p), this.nccl, {
      ...(this.opts.bucketBytes !== undefined ? { bucketBytes: this.opts.bucketBytes } : {}),
      ...(this.opts.overlap !== undefined ? { overlap: this.opts.overlap } : {}),
      ...(zero === 2 ? { owner: (p: Tensor) => byTensor.get(p)! } : {}),
    });
    if (zero === 2) this.gradNorm = () => this.#globalNorm();
  }

  /** ZeRO-2: each rank's gradients (its own parameters) make one global norm (float64 sum of squares). */
  #globalNorm(): number {
    const mine = this.#byRank[this.rank]!.flatMap(([, p]) => (p.grad ? [p.grad] : []));
    const local = mine.length > 0 ? globalGradNorm(mine) : 0;
    return Math.sqrt(this.sum([local * local])[0]!);
  }

  /** ZeRO-1/2: every parameter from the rank that updated it, on the device (one NCCL group per rank). */
  afterStep(): void {
    if (!this.owner || this.worldSize === 1) return;
    this.#byRank.forEach((list, k) => {
      if (list.length > 0) this.nccl.group(() => list.forEach(([, p]) => this.nccl.broadcastAsync(p, k)));
    });
    this.nccl.synchronize();
  }

  /** ZeRO-1/2: the whole optimizer state on every rank (what rank 0's checkpoint holds). */
  consolidate(state: OptimizerState): OptimizerState {
    if (!this.owner) return state;
    return consolidateShards(state, this.#named, this.#byRank, this.rank, (buf, root) => this.#broadcastHost(buf, root));
  }

  /** A host array from `root`: over MPI when there is one, else through a device copy over NCCL. */
  #broadcastHost(buf: Float32Array, root: number): void {
    if (this.mpi) this.mpi.broadcast(buf, root);
    else this.nccl.broadcastHost(buf, root);
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
    this.nccl.allReduceHost(parts);
    return values.map((_, i) => parts[2 * i]! + parts[2 * i + 1]!);
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
 * MASTER_ADDR:MASTER_PORT. Options (ZeRO stage, global batch, buckets, overlap) from `opts`, else
 * from the launch's PATENTGPT_* variables. Throws E_UNSUPPORTED saying what to install when NCCL is missing.
 */
export async function initNcclDataParallel(opts: { env?: Record<string, string | undefined>; mpi?: boolean; threads?: number; zero?: 0 | 1 | 2; options?: DataParallelOptions } = {}): Promise<NcclDataParallel> {
  const env = opts.env ?? process.env;
  requireNccl(); // before MPI or any exchange: a clear E_UNSUPPORTED, not a hang
  const dpOpts: DataParallelOptions = { ...envOptions(env), ...opts.options, ...(opts.zero !== undefined ? { zero: opts.zero } : {}) };
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
  return new NcclDataParallel(nccl, info, mpi, dpOpts);
}
