// Gradient buckets, as PyTorch DDP makes them: the trainable parameters in reverse order (the
// order backward produces their gradients) cut into buckets of about bucketBytes; a bucket's
// all-reduce starts on MPI's communication thread as soon as backward has produced every gradient
// in it, so the reduction of the last layers overlaps the backward of the first. finish() starts
// what is left, waits for all, and writes the means back into the gradients.
//
// Seeing a gradient arrive: backward assigns a leaf's .grad when its first gradient comes, so each
// parameter's `grad` becomes an accessor that tells the buckets. A parameter used twice in one
// step (tied embeddings) gets more added after that first assignment; the first step therefore
// checks, after backward, that no early bucket changed after it was sent (all ranks agree through
// one all-reduce of the flags), re-reduces the buckets that did, and from then on sends those
// only after backward. Micro-batches before the last (gradAccum) are not reduced at all, and the
// last adds into gradients that exist already, so with gradAccum > 1 every bucket goes after backward.
//
// ZeRO-2 (`owner` given): a bucket's parameters are grouped by the rank that owns them and the
// bucket is reduce-scattered: each rank receives only the mean of its own parameters' gradients
// and frees the others' (as soon as the bucket is sent, once the first step has shown which
// buckets are final when sent), so a rank holds about 1/N of the gradients at the step.
//
// CUDA gradients (an NcclCommunicator given as the engine) are reduced by NCCL in place on the
// device, a bucket's gradients in one NCCL group (ncclAllReduce each, mean). With overlap the
// groups go on NCCL's own stream as soon as backward made the bucket: an event recorded on the
// compute stream is waited on by the communication stream (order('compute')), so the reduction
// runs beside the rest of backward; finish() sends the rest, makes the compute stream wait for the
// communication stream (order('comm')) before the optimizer, and synchronizes once (the timeout).
// The first step only watches which buckets backward changes after their last gradient arrived
// (host copies compared, every rank agreeing through one all-reduce of the flags): those go only
// after backward from then on, as on MPI. ZeRO-2 over NCCL reduces each gradient to the rank that
// owns its parameter (ncclReduce, mean, in the bucket's group: NCCL's reduce-scatter wants equal
// blocks per rank, this is the same traffic without padding or packing copies); the other ranks'
// gradients are freed after the synchronize (never while NCCL may still read them).
import { PatentGPTError } from '../errors.js';
import { Tensor } from '../tensor/index.js';
import { scaleInPlace } from './collectives.js';
import { MpiCommunicator, type Pending } from './mpi.js';
import { NcclCommunicator } from './nccl.js';

export interface BucketStats {
  /** Steps reduced. */
  steps: number;
  /** Time inside MPI for the gradient buckets (the communication thread), ms. */
  commMs: number;
  /** Time the trainer was blocked in finish() waiting for buckets, ms. */
  waitMs: number;
  /** Buckets started while backward was still running. */
  overlapped: number;
  buckets: number;
  /** Bytes of gradients this rank held after the last reduction (ZeRO-2: about 1/N). */
  gradientBytes: number;
}

interface Bucket {
  params: Tensor[];
  offsets: number[];
  buf: Float32Array;
  /** ZeRO-2: the values of each rank's parameters (in rank order), and this rank's block. */
  counts: Int32Array | null;
  mine: Float32Array | null;
  /** ZeRO-2: index of this rank's first parameter in params, and one past its last. */
  first: number;
  end: number;
  ready: number;
  /** Sent only after backward (a parameter of it gets gradient after its first assignment). */
  late: boolean;
  pending: Pending | null;
  /** First step: the values as sent, to see whether backward changed them afterwards. */
  sent: Float32Array | null;
  duringBackward: boolean;
  /** NCCL: the bucket's group was enqueued this step. */
  sentNccl: boolean;
}

/** One bucket as planned: the parameters (indices into the constructor's list) and where each sits. */
export interface BucketPlan {
  /** Indices of its parameters; ZeRO-2: grouped by owning rank (rank order), backward order within. */
  params: number[];
  /** Offset of each parameter in the bucket's flat buffer. */
  offsets: number[];
  /** Values in the bucket. */
  size: number;
  /** ZeRO-2: values of each rank's parameters (rank order); null without owners. */
  counts: Int32Array | null;
  /** ZeRO-2: this rank's parameters are params[first..end) (first = end = 0 when it owns none). */
  first: number;
  end: number;
}

/**
 * DDP's buckets: the parameters in reverse order (as backward produces their gradients), a bucket
 * closed before it would pass `capValues` (a parameter larger than that gets one of its own). With
 * owners (ZeRO-2), each bucket's parameters are regrouped by owning rank, so each rank's values are
 * one block: the counts of a reduce-scatter, and this rank's slice [first, end).
 */
export function planBuckets(sizes: readonly number[], capValues: number, ranks: { rank: number; size: number; owner?: ((i: number) => number) | null }): BucketPlan[] {
  const cap = Math.max(1, Math.floor(capValues));
  const owner = ranks.owner ?? null;
  const plans: BucketPlan[] = [];
  let cur: number[] = [];
  let n = 0;
  const close = (): void => {
    if (cur.length === 0) return;
    let counts: Int32Array | null = null;
    let first = 0;
    let end = cur.length;
    if (owner) {
      cur = cur.map((p, i) => ({ p, i })).sort((a, b) => owner(a.p) - owner(b.p) || a.i - b.i).map((x) => x.p);
      counts = new Int32Array(ranks.size);
      for (const p of cur) counts[owner(p)]! += sizes[p]!;
      first = cur.findIndex((p) => owner(p) === ranks.rank);
      if (first < 0) first = end = 0;
      else end = first + cur.filter((p) => owner(p) === ranks.rank).length;
    }
    const offsets: number[] = [];
    let at = 0;
    for (const p of cur) {
      offsets.push(at);
      at += sizes[p]!;
    }
    plans.push({ params: cur, offsets, size: at, counts, first, end });
    cur = [];
    n = 0;
  };
  for (let p = sizes.length - 1; p >= 0; p--) {
    if (n > 0 && n + sizes[p]! > cap) close();
    cur.push(p);
    n += sizes[p]!;
  }
  close();
  return plans;
}

export class GradientBuckets {
  readonly buckets: Bucket[];
  readonly stats: BucketStats = { steps: 0, commMs: 0, waitMs: 0, overlapped: 0, buckets: 0, gradientBytes: 0 };
  readonly #comm: MpiCommunicator;
  /** CUDA gradients: the NCCL engine (then #comm is unused). */
  readonly #nccl: NcclCommunicator | null;
  readonly #of = new Map<Tensor, Bucket>();
  readonly #overlap: boolean;
  readonly #owner: ((p: Tensor) => number) | null;
  #armed = false;
  #calibrated = false;
  /** NCCL: the first bucket not yet sent this step. */
  #nextNccl = 0;

  constructor(params: readonly Tensor[], engine: MpiCommunicator | NcclCommunicator, opts: { bucketBytes?: number; overlap?: boolean; owner?: (p: Tensor) => number } = {}) {
    const nccl = (this.#nccl = engine instanceof NcclCommunicator ? engine : null);
    // Only the MPI paths read #comm; with NCCL the size and rank are the same fields.
    const comm = (this.#comm = engine as MpiCommunicator);
    const onCuda = params.some((p) => p.device === 'cuda');
    if (onCuda && !nccl)
      throw new PatentGPTError('E_UNSUPPORTED', `data parallel: CUDA parameters: their gradients go through NCCL; give GradientBuckets an NcclCommunicator (MpiDataParallel and NcclDataParallel do when the model is on CUDA)`);
    this.#overlap = opts.overlap ?? true;
    const owner = (this.#owner = opts.owner ?? null);
    const device = nccl ? 'cuda' : 'cpu';
    for (const p of params)
      if (p.dtype !== 'f32' || p.device !== device)
        throw new PatentGPTError('E_UNSUPPORTED', `data parallel: parameter ${p.describe()}: the ${nccl ? 'NCCL' : 'MPI'} engine reduces f32 ${device.toUpperCase()} gradients (all parameters on one device)`);
    const plans = planBuckets(params.map((p) => p.size), (opts.bucketBytes ?? 25 * 1024 * 1024) / 4, {
      rank: comm.rank, size: comm.size, ...(owner ? { owner: (i: number) => owner(params[i]!) } : {}),
    });
    this.buckets = plans.map((b) => ({
      params: b.params.map((i) => params[i]!), offsets: b.offsets, counts: b.counts, first: b.first, end: b.end,
      // NCCL reduces the gradients where they are: no host staging buffer.
      buf: new Float32Array(nccl ? 0 : b.size), mine: b.counts ? new Float32Array(nccl ? 0 : b.counts[comm.rank]!) : null,
      ready: 0, late: false, pending: null, sent: null, duringBackward: false, sentNccl: false,
    }));
    for (const b of this.buckets) for (const p of b.params) this.#of.set(p, b);
    if (this.#overlap) for (const p of params) this.#watch(p);
  }

  /** Makes p.grad an accessor that reports the first assignment of a step's last backward. */
  #watch(p: Tensor): void {
    let value = p.grad;
    Object.defineProperty(p, 'grad', {
      configurable: true,
      enumerable: true,
      get: () => value,
      set: (g: Tensor | null) => {
        value = g;
        if (g !== null && this.#armed) this.#arrived(p);
      },
    });
  }

  #arrived(p: Tensor): void {
    const b = this.#of.get(p)!;
    if (++b.ready < b.params.length || b.late) return;
    if (!this.#nccl) {
      if (b.pending === null) this.#send(b, true);
    } else if (!this.#calibrated) b.sent ??= this.#hostCopy(b); // first step: only watch (see #calibrateNccl)
    else {
      // Strictly in bucket order, so every rank issues the same groups in the same order even when
      // one rank's batch leaves a bucket without some gradient (it then goes at finish, with all after it).
      const batch: Bucket[] = [];
      for (; this.#nextNccl < this.buckets.length; this.#nextNccl++) {
        const c = this.buckets[this.#nextNccl]!;
        if (c.late || c.ready < c.params.length) break;
        batch.push(c);
      }
      if (batch.length > 0) this.#sendNccl(this.#nccl, batch, true);
    }
  }

  /** The bucket's gradients as one host array (first NCCL step only: it waits for the device). */
  #hostCopy(b: Bucket): Float32Array {
    const out = new Float32Array(b.params.reduce((a, p) => a + p.size, 0));
    let at = 0;
    for (const p of b.params) at += p.grad ? p.grad.read(out.subarray(at, at + p.size)).length : p.size;
    return out;
  }

  /**
   * Enqueues the buckets' reductions: one NCCL group each, on the communication stream once it
   * waited for the kernels issued so far (the gradients); every rank issues the same groups in the
   * same order (buckets fire in backward's order, the same on every rank; late ones after backward).
   */
  #sendNccl(nccl: NcclCommunicator, buckets: readonly Bucket[], duringBackward: boolean): void {
    if (buckets.length === 0) return;
    // A gradient this rank's batch did not reach is zero here (made on the compute stream, before the wait).
    for (const b of buckets) for (const p of b.params) p.grad ??= Tensor.zeros(p.shape, { device: 'cuda' });
    if (this.#overlap) {
      nccl.order('compute');
      nccl.useCommStream(true);
    }
    try {
      for (const b of buckets) {
        nccl.group(() => {
          for (const p of b.params) {
            if (this.#owner) nccl.reduceAsync(p.grad!, this.#owner(p), 'mean');
            else nccl.allReduceAsync(p.grad!, 'mean');
          }
        });
        b.sentNccl = true;
        b.duringBackward = duringBackward;
        if (duringBackward) this.stats.overlapped++;
      }
    } finally {
      if (this.#overlap) nccl.useCommStream(false);
    }
  }

  #send(b: Bucket, duringBackward: boolean): void {
    b.params.forEach((p, i) => {
      const view = b.buf.subarray(b.offsets[i]!, b.offsets[i]! + p.size);
      if (p.grad) p.grad.read(view);
      else view.fill(0); // a parameter this rank's batch did not reach: its gradient is zero
    });
    if (!this.#calibrated && duringBackward) b.sent = b.buf.slice();
    b.duringBackward = duringBackward;
    if (duringBackward) this.stats.overlapped++;
    if (b.counts) {
      b.pending = this.#comm.reduceScatterVAsync(b.buf, b.mine!, b.counts);
      // ZeRO-2: the other ranks' gradients are in the buffer; free them now unless backward may
      // still add to them (the first step, or a late bucket)
      if (this.#calibrated && !b.late) this.#freeOthers(b);
    } else b.pending = this.#comm.allReduceAsync(b.buf);
  }

  #freeOthers(b: Bucket): void {
    b.params.forEach((p, i) => {
      if ((i < b.first || i >= b.end) && p.grad) {
        p.grad.dispose();
        p.grad = null;
      }
    });
  }

  /** Before the backward of a step's last micro-batch: buckets start as gradients arrive. */
  arm(): void {
    for (const b of this.buckets) {
      b.ready = 0;
      b.sentNccl = false;
    }
    this.#nextNccl = 0;
    this.#armed = this.#overlap;
  }

  /** After backward: sends the rest, waits, and leaves the mean over the ranks in every gradient. */
  finish(): void {
    this.#armed = false;
    if (this.#nccl) return this.#finishNccl(this.#nccl);
    for (const b of this.buckets) if (b.pending === null) this.#send(b, false);
    const t0 = performance.now();
    for (const b of this.buckets) {
      this.stats.commMs += b.pending!.wait();
      b.pending = null;
    }
    if (!this.#calibrated) this.#calibrate();
    this.stats.waitMs += performance.now() - t0;
    const inv = 1 / this.#comm.size;
    let held = 0;
    for (const b of this.buckets) {
      if (b.counts) {
        scaleInPlace(b.mine!, inv);
        this.#freeOthers(b);
        const base = b.first < b.end ? b.offsets[b.first]! : 0;
        for (let i = b.first; i < b.end; i++) {
          const p = b.params[i]!;
          const view = b.mine!.subarray(b.offsets[i]! - base, b.offsets[i]! - base + p.size);
          if (p.grad) p.grad.write(view);
          else if (view.some((x) => x !== 0)) p.grad = Tensor.from(view.slice(), p.shape);
          held += p.grad?.byteLength ?? 0;
        }
        continue;
      }
      scaleInPlace(b.buf, inv);
      b.params.forEach((p, i) => {
        const view = b.buf.subarray(b.offsets[i]!, b.offsets[i]! + p.size);
        if (p.grad) p.grad.write(view);
        // Not reached by this rank's batch (an expert no token was routed to) but by another's: the
        // mean is its gradient here too, so every rank takes the same step.
        else if (view.some((x) => x !== 0)) p.grad = Tensor.from(view.slice(), p.shape);
        held += p.grad?.byteLength ?? 0;
      });
    }
    this.stats.gradientBytes = held;
    this.stats.steps++;
    this.stats.buckets += this.buckets.length;
  }

  /**
   * CUDA: the buckets not sent during backward go now; the compute stream waits for the
   * communication stream (the optimizer reads the means), then one synchronize with the timeout.
   * ZeRO-2: the gradients of other ranks' parameters are freed after it.
   */
  #finishNccl(nccl: NcclCommunicator): void {
    const t0 = performance.now();
    if (!this.#calibrated) this.#calibrateNccl(nccl);
    this.#sendNccl(nccl, this.buckets.filter((b) => !b.sentNccl), false);
    if (this.#overlap) nccl.order('comm');
    this.stats.commMs += nccl.synchronize();
    this.stats.waitMs += performance.now() - t0;
    let held = 0;
    for (const b of this.buckets) {
      b.params.forEach((p, i) => {
        if (this.#owner && (i < b.first || i >= b.end) && p.grad) {
          p.grad.dispose();
          p.grad = null;
        }
        held += p.grad?.byteLength ?? 0;
      });
    }
    this.stats.gradientBytes = held;
    this.stats.steps++;
    this.stats.buckets += this.buckets.length;
  }

  /**
   * First NCCL step (nothing was sent during its backward): the buckets whose gradients changed
   * after their last one arrived (a parameter used twice) are late from now on; every rank agrees
   * (a sum of the flags over NCCL), so all send the same groups at the same time.
   */
  #calibrateNccl(nccl: NcclCommunicator): void {
    this.#calibrated = true;
    const flags = new Float32Array(Math.max(1, this.buckets.length));
    this.buckets.forEach((b, k) => {
      if (!b.sent) return;
      const now = this.#hostCopy(b);
      if (now.some((x, j) => x !== b.sent![j] && !(Number.isNaN(x) && Number.isNaN(b.sent![j]!)))) flags[k] = 1;
      b.sent = null;
    });
    nccl.allReduceHost(flags);
    this.buckets.forEach((b, k) => {
      if (flags[k]! > 0) b.late = true;
    });
  }

  /** First step: buckets sent during backward whose gradients changed afterwards are sent again, and late from now on. */
  #calibrate(): void {
    this.#calibrated = true;
    const flags = new Int32Array(this.buckets.length);
    this.buckets.forEach((b, k) => {
      if (!b.sent) return;
      const now = new Float32Array(b.buf.length);
      b.params.forEach((p, i) => p.grad?.read(now.subarray(b.offsets[i]!, b.offsets[i]! + p.size)));
      if (now.some((x, j) => x !== b.sent![j] && !(Number.isNaN(x) && Number.isNaN(b.sent![j]!)))) flags[k] = 1;
      b.sent = null;
    });
    this.#comm.allReduce(flags, 'max'); // every rank must send the same buckets at the same time
    this.buckets.forEach((b, k) => {
      if (flags[k] === 0) return;
      b.late = true;
      this.#send(b, false);
      this.stats.commMs += b.pending!.wait();
      b.pending = null;
    });
  }

  /** Parameters whose bucket goes only after backward (tied or reused weights). */
  get lateParameters(): number {
    return this.buckets.filter((b) => b.late).reduce((s, b) => s + b.params.length, 0);
  }
}
