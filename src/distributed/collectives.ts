// Collectives over the package's tensors: all-reduce, reduce-scatter, all-gather and broadcast.
// CPU tensors go through MPI (a staging Float32Array per call: the values cross once each way, as
// a DDP bucket's do); CUDA tensors need NCCL, whose shim (native/collectives/nccl_shim.cpp) is not
// wired to tensors yet, so they are refused with E_UNSUPPORTED.
import { PatentGPTError } from '../errors.js';
import { Tensor } from '../tensor/index.js';
import type { MpiCommunicator } from './mpi.js';

function cpuF32(op: string, t: Tensor): void {
  if (t.device !== 'cpu')
    throw new PatentGPTError('E_UNSUPPORTED', `${op}: ${t.describe()}: CUDA tensors go through NCCL, which is not wired to tensors yet; move the tensor to the CPU`);
  if (t.dtype !== 'f32') throw new PatentGPTError('E_DTYPE', `${op}: ${t.describe()}: f32 tensors only`);
}

/** In place: each tensor becomes the sum (or mean) of its values over the ranks; one MPI call for all. */
export function allReduceTensors(comm: MpiCommunicator, tensors: readonly Tensor[], op: 'sum' | 'mean' = 'sum'): void {
  let n = 0;
  for (const t of tensors) {
    cpuF32('allReduce', t);
    n += t.size;
  }
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
export function reduceScatterTensor(comm: MpiCommunicator, input: Tensor): Tensor {
  cpuF32('reduceScatter', input);
  if (input.shape.length === 0 || input.shape[0]! % comm.size !== 0)
    throw new PatentGPTError('E_SHAPE', `reduceScatter: ${input.describe()}: dimension 0 must be a multiple of the ${comm.size} ranks`);
  const out = new Float32Array(input.size / comm.size);
  comm.reduceScatter(input.toArray() as Float32Array, out);
  return Tensor.from(out, [input.shape[0]! / comm.size, ...input.shape.slice(1)]);
}

/** Every rank's tensor stacked in rank order: shape [size * d0, ...]. */
export function allGatherTensor(comm: MpiCommunicator, input: Tensor): Tensor {
  cpuF32('allGather', input);
  const out = new Float32Array(input.size * comm.size);
  comm.allGather(input.toArray() as Float32Array, out);
  return Tensor.from(out, input.shape.length === 0 ? [comm.size] : [input.shape[0]! * comm.size, ...input.shape.slice(1)]);
}

/** In place: root's values on every rank. */
export function broadcastTensor(comm: MpiCommunicator, t: Tensor, root = 0): void {
  cpuF32('broadcast', t);
  const buf = t.toArray() as Float32Array;
  comm.broadcast(buf, root);
  if (comm.rank !== root) t.write(buf);
}

export function scaleInPlace(buf: Float32Array, s: number): void {
  if (s === 1) return;
  const f = Math.fround(s);
  for (let i = 0; i < buf.length; i++) buf[i] = Math.fround(buf[i]! * f);
}
