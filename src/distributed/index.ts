// Data-parallel and sharded training across processes: launcher variables (env), the MPI engine
// (mpi), collectives over tensors, DDP-style gradient buckets and the trainer's engine.
export { gpuForRank, rankFromEnv, threadsPerRank, type LaunchSource, type RankInfo } from './env.js';
export { MpiCommunicator, defaultTimeoutMs, ensureMpiModule, findMpiModule, type Pending } from './mpi.js';
export { allGatherTensor, allReduceTensors, broadcastTensor, reduceScatterTensor } from './collectives.js';
export { GradientBuckets, type BucketStats } from './ddp.js';
export { MpiDataParallel, initDataParallel, type DataParallelOptions } from './data-parallel.js';
