// Data-parallel and sharded training across processes: launcher variables (env), the MPI engine
// (mpi) and NCCL engine (nccl, rendezvous), collectives over tensors, DDP-style gradient buckets and the trainer's engine.
export { gpuForRank, rankFromEnv, threadsPerRank, type LaunchSource, type RankInfo } from './env.js';
export { MpiCommunicator, defaultTimeoutMs, ensureMpiModule, findMpiModule, type Pending } from './mpi.js';
export { allGatherTensor, allReduceTensors, broadcastTensor, engineFor, reduceScatterTensor, type Group, type ProcessGroup } from './collectives.js';
export { NcclCommunicator, ncclStatus, requireNccl, type NcclInitOptions } from './nccl.js';
export { NcclDataParallel, initNcclDataParallel } from './nccl-data-parallel.js';
export { shareBytes, type RendezvousOptions } from './rendezvous.js';
export { GradientBuckets, planBuckets, type BucketPlan, type BucketStats } from './ddp.js';
export { chooseEngine, launchedByMpi, type EngineChoice } from './engine-choice.js';
export { initStageDataParallel, pinGpu, type StageEngine } from './stage-engine.js';
export { MpiDataParallel, initDataParallel, partition, type DataParallelOptions } from './data-parallel.js';
