// One rank of test/distributed/collectives.test.ts (run under mpirun): each collective over
// tensors, the gradient buckets against a plain all-reduce, and a timeout; prints one JSON line.
import { allGatherTensor, allReduceTensors, broadcastTensor, GradientBuckets, MpiCommunicator, reduceScatterTensor } from '../../src/distributed/index.js';
import { Tensor } from '../../src/tensor/index.js';

const mode = process.argv[2] ?? 'ops';
const comm = MpiCommunicator.init({ timeoutMs: 1500 });
const r = comm.rank;
const W = comm.size;
const out: Record<string, unknown> = { rank: r, size: W };

if (mode === 'ops') {
  const a = Tensor.from([r + 1, 10 * (r + 1), -r], [3]);
  const b = Tensor.from([0.5, r], [2]);
  allReduceTensors(comm, [a, b]);
  out.allReduce = [...a.toArray(), ...b.toArray()];
  const m = Tensor.from([r, 2 * r], [2]);
  allReduceTensors(comm, [m], 'mean');
  out.mean = [...m.toArray()];
  // rank k contributes [k*10 + i for i in 0..2W): block r of the sum
  const rsIn = Tensor.from(Array.from({ length: 2 * W }, (_, i) => r * 10 + i), [W, 2]);
  out.reduceScatter = { shape: reduceScatterTensor(comm, rsIn).shape, values: [...reduceScatterTensor(comm, rsIn).toArray()] };
  const g = allGatherTensor(comm, Tensor.from([r, r + 0.5], [1, 2]));
  out.allGather = { shape: g.shape, values: [...g.toArray()] };
  const bc = Tensor.from([r === 1 ? 7 : 0, r === 1 ? 8 : 0], [2]);
  broadcastTensor(comm, bc, 1);
  out.broadcast = [...bc.toArray()];
  // Buckets (tiny: several per step), fed as backward would: grads assigned in reverse order,
  // one parameter accumulated after its first assignment (a tied weight).
  const params = [0, 1, 2, 3].map((i) => Tensor.zeros([5 + i]));
  const buckets = new GradientBuckets(params, comm, { bucketBytes: 40 });
  const expected: number[][] = [];
  for (let step = 0; step < 2; step++) {
    for (const p of params) p.grad = null;
    buckets.arm();
    for (let i = params.length - 1; i >= 0; i--) params[i]!.grad = Tensor.from(Array.from({ length: params[i]!.size }, (_, j) => (r + 1) * (i + j + step)), [params[i]!.size]);
    // params[3] (sent first, during backward) gets a second contribution afterwards
    const before = params[3]!.grad!.toArray() as Float32Array;
    params[3]!.grad = Tensor.from(before.map((x) => x + r + 1), [params[3]!.size]);
    buckets.finish();
    expected.push(...params.map((p) => [...(p.grad!.toArray() as Float32Array)]));
  }
  out.buckets = { grads: expected, n: buckets.buckets.length, late: buckets.lateParameters, overlapped: buckets.stats.overlapped };
  // A parameter only rank 0's batch reached (an expert no token of rank 1 was routed to): both
  // ranks end with the mean, and one that no rank reached keeps no gradient.
  const moe = [Tensor.zeros([2]), Tensor.zeros([2]), Tensor.zeros([2])];
  const mb = new GradientBuckets(moe, comm, { overlap: false });
  mb.arm();
  moe[0]!.grad = Tensor.from([1, 1], [2]);
  if (r === 0) moe[1]!.grad = Tensor.from([2, 4], [2]);
  mb.finish();
  out.unreached = moe.map((p) => (p.grad ? [...(p.grad.toArray() as Float32Array)] : null));
} else if (mode === 'timeout') {
  // Rank 1 never joins the all-reduce: rank 0 fails after its timeout, naming itself.
  if (r === 0) {
    try {
      comm.allReduce(new Float32Array([1]));
      out.error = null;
    } catch (err) {
      out.error = { code: (err as { code?: string }).code, message: (err as Error).message };
    }
    console.log(JSON.stringify(out));
    process.exit(3); // mpirun ends the job; the other rank is stuck waiting
  }
  setTimeout(() => process.exit(0), 10_000);
}
if (mode === 'ops') {
  console.log(JSON.stringify(out));
  comm.close();
}
