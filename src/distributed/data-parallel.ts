// The data-parallel engine over MPI: what the trainer's DataParallelEngine asks (gradient buckets,
// over NCCL when the model is on CUDA; sums of the step's numbers), and setting a process up as one rank of a job: its rank from the
// launcher's variables (env.ts), MPI initialised and checked against them, its kernel threads
// pinned to its share of the cores, MPI finalised when the process ends well.
import { PatentGPTError } from '../errors.js';
import { globalGradNorm, setNumThreads, type Tensor } from '../tensor/index.js';
import type { OptimizerState } from '../train/optimizer.js';
import type { DataParallelEngine } from '../train/trainer.js';
import { GradientBuckets, type BucketStats } from './ddp.js';
import { gpuForRank, rankFromEnv, threadsPerRank, type RankInfo } from './env.js';
import { MpiCommunicator } from './mpi.js';
import { NcclCommunicator } from './nccl.js';

export interface DataParallelOptions {
  /** ZeRO stage: 0 (replicated, default), 1 (optimizer state sharded) or 2 (and gradients): PATENTGPT_ZERO. */
  zero?: 0 | 1 | 2;
  /** The config's batchSize x gradAccum is the global batch (PATENTGPT_GLOBAL_BATCH=1). */
  globalBatch?: boolean;
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
  /** A model on CUDA: the NCCL communicator its gradients go through (made at attach, over MPI). */
  nccl: NcclCommunicator | null = null;
  /** ZeRO-1: the rank that owns each parameter (by name), and each rank's parameters. */
  owner: Map<string, number> | null = null;
  #named: (readonly [string, Tensor])[] = [];
  #byRank: (readonly [string, Tensor])[][] = [];
  owns?: (name: string) => boolean;
  readonly globalBatch: boolean;

  constructor(comm: MpiCommunicator, info: RankInfo, opts: DataParallelOptions = {}) {
    this.comm = comm;
    this.info = info;
    this.opts = opts;
    this.globalBatch = opts.globalBatch === true;
  }

  get rank(): number {
    return this.comm.rank;
  }
  get worldSize(): number {
    return this.comm.size;
  }

  attach(params: readonly (readonly [string, Tensor])[]): void {
    this.#named = [...params];
    const zero = this.opts.zero ?? 0;
    if (zero >= 1) ({ owner: this.owner, byRank: this.#byRank, owns: this.owns } = zeroOwnership(params, this.worldSize, this.rank));
    const byTensor = new Map(params.map(([n, p]) => [p, this.owner?.get(n) ?? 0]));
    // CUDA gradients go through NCCL (its id exchanged over this MPI job); the step's sums, the
    // barrier and ZeRO-1's broadcasts (host copies) stay on MPI.
    const onCuda = params.some(([, p]) => p.device === 'cuda');
    const engine = onCuda ? (this.nccl ??= NcclCommunicator.initOverMpi(this.comm, this.comm.timeoutMs)) : this.comm;
    this.buckets = new GradientBuckets(params.map(([, p]) => p), engine, { ...this.opts, ...(zero === 2 ? { owner: (p: Tensor) => byTensor.get(p)! } : {}) });
    if (zero === 2) this.gradNorm = () => this.#globalNorm();
  }

  /** ZeRO-2: each rank's gradients (its own parameters) make one global norm (float64 sum of squares). */
  gradNorm?: () => number;
  #globalNorm(): number {
    const mine = this.#byRank[this.rank]!.flatMap(([, p]) => (p.grad ? [p.grad] : []));
    const local = mine.length > 0 ? globalGradNorm(mine) : 0;
    return Math.sqrt(this.sum([local * local])[0]!);
  }

  /** ZeRO-1: every parameter from the rank that updated it (one broadcast per rank). */
  afterStep(): void {
    if (!this.owner) return;
    this.#byRank.forEach((list, k) => {
      const buf = new Float32Array(list.reduce((a, [, p]) => a + p.size, 0));
      if (buf.length === 0) return;
      let at = 0;
      if (k === this.rank) for (const [, p] of list) at += p.read(buf.subarray(at, at + p.size)).length;
      this.comm.broadcast(buf, k);
      at = 0;
      if (k !== this.rank) for (const [, p] of list) p.write(buf.subarray(at, (at += p.size)));
    });
  }

  /**
   * ZeRO-1: the whole optimizer state from every rank's shard (a collective; every rank gets it),
   * in parameter order: what a checkpoint holds, so it resumes on any number of ranks.
   */
  consolidate(state: OptimizerState): OptimizerState {
    if (!this.owner) return state;
    return consolidateShards(state, this.#named, this.#byRank, this.rank, (buf, root) => this.comm.broadcast(buf, root));
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

/**
 * ZeRO-1: the whole optimizer state from every rank's shard (`byRank[k]`: rank k's parameters), in
 * the order of `named`: each rank's moments broadcast from it in turn by `broadcast` (MPI's, or
 * NCCL's through a device copy). A collective: every rank calls it and gets the whole state.
 */
export function consolidateShards(state: OptimizerState, named: readonly (readonly [string, Tensor])[], byRank: readonly (readonly (readonly [string, Tensor])[])[],
  rank: number, broadcast: (buf: Float32Array, root: number) => void): OptimizerState {
  const twoMoments = state.type !== 'sgd';
  const mine = new Map(state.entries.map((e) => [e.name, e]));
  const all = new Map<string, OptimizerState['entries'][number]>();
  byRank.forEach((list, k) => {
    const n = list.reduce((a, [, p]) => a + p.size, 0) * (twoMoments ? 2 : 1);
    if (n === 0) return;
    const buf = new Float32Array(n);
    let at = 0;
    if (k === rank)
      for (const [name] of list) {
        const e = mine.get(name)!;
        buf.set(e.m, at);
        at += e.m.length;
        if (twoMoments) {
          buf.set(e.v!, at);
          at += e.v!.length;
        }
      }
    broadcast(buf, k);
    at = 0;
    for (const [name, p] of list) {
      const m = buf.slice(at, (at += p.size));
      const v = twoMoments ? buf.slice(at, (at += p.size)) : undefined;
      all.set(name, { name, shape: [...p.shape], m, ...(v ? { v } : {}) });
    }
  });
  return { ...state, entries: named.map(([n]) => all.get(n)!) };
}

/**
 * ZeRO-1's partition, as torch's ZeroRedundancyOptimizer makes it: whole parameters, the largest
 * first, each to the rank with the fewest values so far (ties: the lowest rank); deterministic, so
 * every rank computes the same.
 */
export function partition(params: readonly (readonly [string, number])[], ranks: number): Map<string, number> {
  const load = new Array<number>(ranks).fill(0);
  const order = params.map(([n, size], i) => ({ n, size, i })).sort((a, b) => b.size - a.size || a.i - b.i);
  const owner = new Map<string, number>();
  for (const { n, size } of order) {
    let k = 0;
    for (let j = 1; j < ranks; j++) if (load[j]! < load[k]!) k = j;
    owner.set(n, k);
    load[k]! += size;
  }
  return owner;
}

/** ZeRO's ownership of the parameters on `rank` of `ranks`: each parameter's owner (partition), each rank's parameters, and whether this rank owns a name. */
export function zeroOwnership(params: readonly (readonly [string, Tensor])[], ranks: number, rank: number): {
  owner: Map<string, number>;
  byRank: (readonly [string, Tensor])[][];
  owns: (name: string) => boolean;
} {
  const owner = partition(params.map(([n, p]) => [n, p.size] as const), ranks);
  const byRank = Array.from({ length: ranks }, (_, k) => params.filter(([n]) => owner.get(n) === k));
  return { owner, byRank, owns: (name) => owner.get(name) === rank };
}

/** The data-parallel options a launch passes in the environment (PATENTGPT_ZERO, _GLOBAL_BATCH, _BUCKET_MB, _DP_OVERLAP). */
export function envOptions(env: Record<string, string | undefined>): DataParallelOptions {
  const o: DataParallelOptions = {};
  if (env.PATENTGPT_ZERO !== undefined && env.PATENTGPT_ZERO !== '') {
    if (!['0', '1', '2'].includes(env.PATENTGPT_ZERO)) throw new PatentGPTError('E_CONFIG', `PATENTGPT_ZERO=${env.PATENTGPT_ZERO}: must be 0, 1 (optimizer state sharded) or 2 (and gradients)`);
    o.zero = Number(env.PATENTGPT_ZERO) as 0 | 1 | 2;
  }
  if (env.PATENTGPT_GLOBAL_BATCH === '1') o.globalBatch = true;
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
 * pins the kernel threads to this rank's share of the machine's cores (unless `threads` is set)
 * and its GPU to its local rank (CUDA_VISIBLE_DEVICES, before CUDA starts),
 * and finalises MPI when the process exits with code 0 (a failing rank exits without it, and the
 * launcher then stops the others).
 */
export function initDataParallel(opts: { env?: Record<string, string | undefined>; threads?: number } = {}): MpiDataParallel | null {
  if (current) return current;
  const env = opts.env ?? process.env;
  const info = rankFromEnv(env);
  if (info.worldSize === 1) return null;
  const gpu = gpuForRank(info, env);
  if (gpu !== null) process.env.CUDA_VISIBLE_DEVICES = gpu;
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
  // mpirun ends the job on SIGINT/SIGTERM but forwards SIGUSR1: `patentgpt launch` sends that on
  // Ctrl-C, and each rank takes it as its SIGTERM (the trainer then stops, all ranks at one step,
  // with a checkpoint).
  process.on('SIGUSR1', () => process.kill(process.pid, 'SIGTERM'));
  return current;
}
