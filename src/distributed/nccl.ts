// The NCCL engine (CUDA tensors): a communicator per process group over the addon's NCCL bindings
// (bindings/nccl.cpp; NCCL itself is opened at run time, so the package installs and runs without
// it). Bootstrapped as clusters do: rank 0 makes NCCL's 128-byte unique id and the other ranks get
// it over MPI (mpirun, srun) or, launched torchrun-style without MPI, over a TCP rendezvous at
// MASTER_ADDR:MASTER_PORT (rendezvous.ts); then every rank joins on its GPU (LOCAL_RANK's:
// initDataParallel narrows CUDA_VISIBLE_DEVICES to it before CUDA starts).
//
// Collectives are enqueued on the process stream and return at once; synchronize() waits for them
// with the timeout (E_DIST_TIMEOUT naming this rank; the communicator is aborted then, since NCCL
// never times out on its own) and is called by every tensor-level operation before it returns.
import { PatentGPTError } from '../errors.js';
import { addon } from '../native/loader.js';
import type { NativeStorage } from '../native/loader.js';
import { Tensor as TensorClass, type Tensor } from '../tensor/index.js';
import { defaultTimeoutMs, type MpiCommunicator } from './mpi.js';
import { shareBytes } from './rendezvous.js';

/** The NCCL rows of the addon (bindings/nccl.cpp); absent from an addon built before them. */
interface NcclAddon {
  ncclStatus(): { version: number | null; error: string | null; cudaCompiled: boolean };
  ncclUniqueId(): Uint8Array;
  ncclCommInit(id: Uint8Array, nranks: number, rank: number, timeoutMs?: number): number;
  ncclDestroy(comm: number): void;
  ncclSynchronize(comm: number, timeoutMs: number): { ms: number; error: string | null; timedOut: boolean };
  ncclAllReduce(comm: number, x: NativeStorage, xOff: number, n: number, op: 'sum' | 'avg'): void;
  ncclReduceScatter(comm: number, out: NativeStorage, outOff: number, x: NativeStorage, xOff: number, n: number): void;
  ncclAllGather(comm: number, out: NativeStorage, outOff: number, x: NativeStorage, xOff: number, n: number): void;
  ncclBroadcast(comm: number, x: NativeStorage, xOff: number, n: number, root: number): void;
  ncclReduce(comm: number, x: NativeStorage, xOff: number, n: number, op: 'sum' | 'avg', root: number): void;
  ncclGroupStart(): void;
  ncclGroupEnd(comm: number): void;
  ncclUseCommStream(comm: number, on: boolean): void;
  ncclOrder(comm: number, after: 'compute' | 'comm'): void;
}

const UNIQUE_ID_BYTES = 128;

function nccl(): NcclAddon {
  const a = addon() as unknown as Partial<NcclAddon>;
  if (typeof a.ncclStatus !== 'function')
    throw new PatentGPTError('E_UNSUPPORTED', 'this build of the addon has no NCCL bindings: rebuild it (npm run build:native)');
  return a as NcclAddon;
}

/** A native failure as this package's error: NCCL or CUDA missing is E_UNSUPPORTED, a deadline E_DIST_TIMEOUT, the rest E_DIST. */
export function rethrow(err: unknown): never {
  const code = (err as { code?: string }).code;
  const msg = (err as Error).message;
  if (code === 'E_NATIVE_DEVICE' && /NCCL is not available|lacks|built without CUDA/.test(msg)) throw new PatentGPTError('E_UNSUPPORTED', msg);
  // A peer that never joined the communicator or never took part in a call: the deadline passed.
  const timedOut = /not set up within|did not complete within/.test(msg);
  if (code === 'E_NATIVE_DEVICE') throw Object.assign(new Error(`${msg} (run the launch again to resume from the last checkpoint)`), { code: timedOut ? 'E_DIST_TIMEOUT' : 'E_DIST' });
  throw err;
}

/** Whether NCCL opens here: its version (e.g. 22703 for 2.27.3), or why not (what to install). */
export function ncclStatus(): { version: number | null; error: string | null; cudaCompiled: boolean } {
  return nccl().ncclStatus();
}

/** Throws E_UNSUPPORTED saying what to install when NCCL (or CUDA in the addon) is missing. */
export function requireNccl(): void {
  const s = ncclStatus();
  if (s.error) throw new PatentGPTError('E_UNSUPPORTED', s.error);
  if (!s.cudaCompiled) throw new PatentGPTError('E_UNSUPPORTED', 'NCCL reduces CUDA tensors, and this addon was built without CUDA (rebuild where nvcc is found)');
}

export interface NcclInitOptions {
  rank: number;
  worldSize: number;
  /** How rank 0's unique id reaches the others: an MPI communicator, or torchrun's MASTER_ADDR/MASTER_PORT. */
  mpi?: MpiCommunicator;
  masterAddr?: string;
  masterPort?: number;
  /** Collective timeout (default PATENTGPT_DIST_TIMEOUT, 300 s); also the rendezvous's. */
  timeoutMs?: number;
}

function cudaF32(op: string, t: Tensor): void {
  if (t.device !== 'cuda') throw new PatentGPTError('E_DEVICE', `NCCL ${op}: ${t.describe()}: NCCL takes CUDA tensors; CPU tensors go through MPI`);
  if (t.dtype !== 'f32') throw new PatentGPTError('E_DTYPE', `NCCL ${op}: ${t.describe()}: f32 tensors only`);
}

function makeUniqueId(): Uint8Array {
  try {
    return nccl().ncclUniqueId();
  } catch (err) {
    return rethrow(err);
  }
}

/** One NCCL communicator over the job's ranks (NCCL's ncclComm_t). */
export class NcclCommunicator {
  readonly rank: number;
  readonly size: number;
  timeoutMs: number;
  readonly #handle: number;
  #closed = false;
  /** Time waited in synchronize(), ms (the collectives' time not hidden behind other work). */
  waitMs = 0;

  private constructor(handle: number, rank: number, size: number, timeoutMs: number) {
    this.#handle = handle;
    this.rank = rank;
    this.size = size;
    this.timeoutMs = timeoutMs;
  }

  /** NCCL's unique id from rank 0, on every rank (MPI broadcast or the TCP rendezvous). */
  static async exchangeId(o: NcclInitOptions, makeId: () => Uint8Array): Promise<Uint8Array> {
    const timeoutMs = o.timeoutMs ?? defaultTimeoutMs();
    if (o.worldSize === 1) return makeId();
    if (o.mpi) {
      // 128 bytes as 32 int32s: the MPI module broadcasts typed arrays of numbers.
      const words = new Int32Array(UNIQUE_ID_BYTES / 4);
      if (o.rank === 0) new Uint8Array(words.buffer).set(makeId());
      o.mpi.broadcast(words, 0);
      return new Uint8Array(words.buffer);
    }
    if (!o.masterAddr || !o.masterPort)
      throw new PatentGPTError('E_CONFIG',
        `rank ${o.rank} of ${o.worldSize}: NCCL needs its unique id from rank 0: launch with mpirun/srun, or set MASTER_ADDR and MASTER_PORT (torchrun-style)`);
    return shareBytes({
      rank: o.rank, worldSize: o.worldSize, addr: o.masterAddr, port: o.masterPort, bytes: UNIQUE_ID_BYTES, timeoutMs,
      ...(o.rank === 0 ? { payload: makeId() } : {}),
    });
  }

  /**
   * Joins the job's NCCL communicator (a collective: every rank calls it). Throws E_UNSUPPORTED
   * saying what to install when NCCL or CUDA is missing, before any exchange.
   */
  static async init(o: NcclInitOptions): Promise<NcclCommunicator> {
    requireNccl();
    return NcclCommunicator.#join(o, await NcclCommunicator.exchangeId(o, makeUniqueId));
  }

  /** init() over an MPI communicator (its ranks and size), synchronously: the exchange is an MPI broadcast. */
  static initOverMpi(mpi: MpiCommunicator, timeoutMs?: number): NcclCommunicator {
    requireNccl();
    const o: NcclInitOptions = { rank: mpi.rank, worldSize: mpi.size, mpi, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
    const words = new Int32Array(UNIQUE_ID_BYTES / 4);
    if (mpi.rank === 0) new Uint8Array(words.buffer).set(makeUniqueId());
    if (mpi.size > 1) mpi.broadcast(words, 0);
    return NcclCommunicator.#join(o, new Uint8Array(words.buffer));
  }

  static #join(o: NcclInitOptions, id: Uint8Array): NcclCommunicator {
    const n = nccl();
    const timeoutMs = o.timeoutMs ?? defaultTimeoutMs();
    try {
      // Bounded by the same timeout (NCCL >= 2.17): a peer that never joins fails this rank, naming it.
      return new NcclCommunicator(n.ncclCommInit(id, o.worldSize, o.rank, timeoutMs), o.rank, o.worldSize, timeoutMs);
    } catch (err) {
      return rethrow(err);
    }
  }

  #live(): NcclAddon {
    if (this.#closed) throw new PatentGPTError('E_ARGUMENT', `rank ${this.rank}: the NCCL communicator is closed`);
    return nccl();
  }

  #call(f: () => void): void {
    try {
      f();
    } catch (err) {
      rethrow(err);
    }
  }

  /** Waits for the collectives enqueued so far; E_DIST_TIMEOUT / E_DIST naming this rank (the communicator is aborted then). */
  synchronize(): number {
    const r = this.#live().ncclSynchronize(this.#handle, this.timeoutMs);
    this.waitMs += r.ms;
    if (r.error !== null) {
      this.#closed = true;
      throw Object.assign(new Error(`${r.error}. Stop the job and run the launch again to resume from the last checkpoint` +
        (r.timedOut ? ' (or raise the timeout: PATENTGPT_DIST_TIMEOUT seconds)' : '')), { code: r.timedOut ? 'E_DIST_TIMEOUT' : 'E_DIST' });
    }
    return r.ms;
  }

  /** In place, enqueued: the sum (or mean) over the ranks. */
  allReduceAsync(t: Tensor, op: 'sum' | 'mean' = 'sum'): void {
    cudaF32('all-reduce', t);
    const n = this.#live();
    this.#call(() => n.ncclAllReduce(this.#handle, t.storage, t.offset, t.size, op === 'mean' ? 'avg' : 'sum'));
  }
  /** Enqueued: out (n) = block `rank` of the sum over ranks of input (size * n). */
  reduceScatterAsync(out: Tensor, input: Tensor): void {
    cudaF32('reduce-scatter', input);
    cudaF32('reduce-scatter', out);
    if (input.size !== out.size * this.size)
      throw new PatentGPTError('E_SHAPE', `NCCL reduce-scatter: ${input.describe()} must hold ${this.size} x the output's ${out.size} values`);
    const n = this.#live();
    this.#call(() => n.ncclReduceScatter(this.#handle, out.storage, out.offset, input.storage, input.offset, out.size));
  }
  /** Enqueued: out (size * n) = every rank's input (n), in rank order. */
  allGatherAsync(out: Tensor, input: Tensor): void {
    cudaF32('all-gather', input);
    cudaF32('all-gather', out);
    if (out.size !== input.size * this.size)
      throw new PatentGPTError('E_SHAPE', `NCCL all-gather: ${out.describe()} must hold ${this.size} x the input's ${input.size} values`);
    const n = this.#live();
    this.#call(() => n.ncclAllGather(this.#handle, out.storage, out.offset, input.storage, input.offset, input.size));
  }
  /** In place, enqueued: root's values on every rank. */
  broadcastAsync(t: Tensor, root = 0): void {
    cudaF32('broadcast', t);
    const n = this.#live();
    this.#call(() => n.ncclBroadcast(this.#handle, t.storage, t.offset, t.size, root));
  }

  /** In place, on host values: the sum over the ranks (through a device copy; waits for it). */
  allReduceHost(buf: Float32Array): void {
    if (this.size === 1) return;
    this.#viaDevice(buf, (t) => this.allReduceAsync(t, 'sum'));
  }

  /** In place, on host values: root's values on every rank (through a device copy; waits for it). */
  broadcastHost(buf: Float32Array, root: number): void {
    if (this.size === 1) return;
    this.#viaDevice(buf, (t) => this.broadcastAsync(t, root));
  }

  #viaDevice(buf: Float32Array, op: (t: Tensor) => void): void {
    const t = TensorClass.from(buf, [buf.length], { device: 'cuda' });
    try {
      op(t);
      this.synchronize();
      t.read(buf);
    } finally {
      t.dispose();
    }
  }

  /** In place, enqueued: root's tensor becomes the sum (or mean) over the ranks; the others' are left as they were. */
  reduceAsync(t: Tensor, root: number, op: 'sum' | 'mean' = 'sum'): void {
    cudaF32('reduce', t);
    const n = this.#live();
    this.#call(() => n.ncclReduce(this.#handle, t.storage, t.offset, t.size, op === 'mean' ? 'avg' : 'sum', root));
  }

  /** The collectives `f` enqueues, launched as one (ncclGroupStart / ncclGroupEnd): a bucket's gradients. */
  group(f: () => void): void {
    const n = this.#live();
    this.#call(() => n.ncclGroupStart());
    try {
      f();
    } finally {
      this.#call(() => n.ncclGroupEnd(this.#handle));
    }
  }

  /**
   * Collectives on the communication stream (on) or the process stream (off, the default). On the
   * communication stream they run beside the kernels; order() is the only ordering between the two.
   */
  useCommStream(on: boolean): void {
    const n = this.#live();
    this.#call(() => n.ncclUseCommStream(this.#handle, on));
  }

  /**
   * On the device, the host goes on: 'compute' makes the communication stream wait for the kernels
   * issued so far (a bucket's gradients are made); 'comm' makes the kernels issued from now on wait
   * for the collectives on the communication stream (before the optimizer reads the gradients).
   */
  order(after: 'compute' | 'comm'): void {
    const n = this.#live();
    this.#call(() => n.ncclOrder(this.#handle, after));
  }

  /** Frees the communicator (after synchronize). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    nccl().ncclDestroy(this.#handle);
  }
}
