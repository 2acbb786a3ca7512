// Collectives over the package's tensors: all-reduce, reduce-scatter, all-gather and broadcast.
// A process group has two engines, chosen by the tensors' device: CPU tensors go through MPI (a
// staging Float32Array per call: the values cross once each way, as a DDP bucket's do), CUDA
// tensors through NCCL (nccl.ts: on the device pointers, on the process stream, then one
// synchronize with the timeout). A group is an MpiCommunicator, an NcclCommunicator, or both.
import { PatentGPTError } from '../errors.js';
import { Tensor } from '../tensor/index.js';
import { MpiCommunicator } from './mpi.js';
import { NcclCommunicator } from './nccl.js';

/** The engines of a process group: MPI for CPU tensors, NCCL for CUDA tensors. */
export interface ProcessGroup {
  mpi?: MpiCommunicator | null;
  nccl?: NcclCommunicator | null;
}
export type Group = MpiCommunicator | NcclCommunicator | ProcessGroup;

function engines(g: Group): ProcessGroup {
  if (g instanceof NcclCommunicator) return { nccl: g };
  if (g instanceof MpiCommunicator) return { mpi: g };
  return g;
}

/** The engine for `t`: NCCL for a CUDA tensor, MPI for a CPU one; E_UNSUPPORTED naming what the group lacks. */
export function engineFor(op: string, g: Group, t: Tensor): { mpi: MpiCommunicator; nccl?: undefined } | { nccl: NcclCommunicator; mpi?: undefined } {
  const e = engines(g);
  if (t.device === 'cuda') {
    if (!e.nccl)
      throw new PatentGPTError('E_UNSUPPORTED', `${op}: ${t.describe()}: CUDA tensors go through NCCL, and this process group has no NCCL communicator ` +
        '(NcclCommunicator.init or initOverMpi), or move the tensor to the CPU');
    return { nccl: e.nccl };
  }
  if (t.dtype !== 'f32') throw new PatentGPTError('E_DTYPE', `${op}: ${t.describe()}: f32 tensors only`);
  if (!e.mpi) throw new PatentGPTError('E_UNSUPPORTED', `${op}: ${t.describe()}: CPU tensors go through MPI, and this process group has no MPI communicator`);
  return { mpi: e.mpi };
}

function sameEngine(op: string, g: Group, tensors: readonly Tensor[]): ReturnType<typeof engineFor> {
  const first = engineFor(op, g, tensors[0]!);
  for (const t of tensors) if ((engineFor(op, g, t).nccl !== undefined) !== (first.nccl !== undefined))
    throw new PatentGPTError('E_DEVICE', `${op}: CPU and CUDA tensors in one call; reduce each device's tensors in a call of their own`);
  return first;
}

/** In place: each tensor becomes the sum (or mean) of its values over the ranks; one MPI call for all. */
export function allReduceTensors(group: Group, tensors: readonly Tensor[], op: 'sum' | 'mean' = 'sum'): void {
  const e = tensors.length > 0 ? sameEngine('allReduce', group, tensors) : { mpi: engines(group).mpi ?? null, nccl: undefined };
  if (e.nccl) {
    for (const t of tensors) e.nccl.allReduceAsync(t, op);
    e.nccl.synchronize();
    return;
  }
  const comm = e.mpi;
  if (!comm) return; // nothing to reduce, and no MPI collective to take part in
  let n = 0;
  for (const t of tensors) n += t.size;
  const buf = new Float32Array(n);
  let at = 0;
  for (const t of tensors) {
    t.read(buf.subarray(at, at + t.size));
    at += t.size;
  }
  comm.allReduce(buf);
  if (op === 'mean') scaleInPlace(buf, 1 / comm.size);
  at = 0;
  for (const t of tensors) {
    t.write(buf.subarray(at, at + t.size));
    at += t.size;
  }
}

/** Rank r's block of the sum over ranks: the input holds size blocks of n values along dim 0; returns a new tensor of n values. */
export function reduceScatterTensor(group: Group, input: Tensor): Tensor {
  const e = engineFor('reduceScatter', group, input);
  const comm = e.nccl ?? e.mpi;
  if (input.shape.length === 0 || input.shape[0]! % comm.size !== 0)
    throw new PatentGPTError('E_SHAPE', `reduceScatter: ${input.describe()}: dimension 0 must be a multiple of the ${comm.size} ranks`);
  const shape = [input.shape[0]! / comm.size, ...input.shape.slice(1)];
  if (e.nccl) {
    const res = Tensor.zeros(shape, { device: 'cuda' });
    e.nccl.reduceScatterAsync(res, input);
    e.nccl.synchronize();
    return res;
  }
  const out = new Float32Array(input.size / comm.size);
  e.mpi.reduceScatter(input.toArray() as Float32Array, out);
  return Tensor.from(out, shape);
}

/** Every rank's tensor stacked in rank order: shape [size * d0, ...]. */
export function allGatherTensor(group: Group, input: Tensor): Tensor {
  const e = engineFor('allGather', group, input);
  const comm = e.nccl ?? e.mpi;
  const shape = input.shape.length === 0 ? [comm.size] : [input.shape[0]! * comm.size, ...input.shape.slice(1)];
  if (e.nccl) {
    const res = Tensor.zeros(shape, { device: 'cuda' });
    e.nccl.allGatherAsync(res, input);
    e.nccl.synchronize();
    return res;
  }
  const out = new Float32Array(input.size * comm.size);
  e.mpi.allGather(input.toArray() as Float32Array, out);
  return Tensor.from(out, shape);
}

/** In place: root's values on every rank. */
export function broadcastTensor(group: Group, t: Tensor, root = 0): void {
  const e = engineFor('broadcast', group, t);
  if (e.nccl) {
    e.nccl.broadcastAsync(t, root);
    e.nccl.synchronize();
    return;
  }
  const comm = e.mpi;
  const buf = t.toArray() as Float32Array;
  comm.broadcast(buf, root);
  if (comm.rank !== root) t.write(buf);
}

export function scaleInPlace(buf: Float32Array, s: number): void {
  if (s === 1) return;
  const f = Math.fround(s);
  for (let i = 0; i < buf.length; i++) buf[i] = Math.fround(buf[i]! * f);
}
