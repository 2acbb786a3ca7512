// The host side of DDP's NCCL path (GradientBuckets with an NcclCommunicator, src/distributed/ddp.ts):
// what it enqueues and when, against a recording stand-in for the communicator (no GPU or NCCL
// here; scripts/nccl-check.ts runs the real thing on a GPU). Parameters are CPU tensors reporting
// device 'cuda' (never reaching a kernel). Checked: the first step only watches, then every bucket
// goes after backward; from the second step each bucket is one NCCL group on the communication
// stream as soon as backward made it, after order('compute'), strictly in bucket order; finish
// makes the compute stream wait (order('comm')) and synchronizes; a bucket changed after it filled
// is late from then on; ZeRO-2 reduces each gradient to its owner and frees the others' after the
// synchronize; without overlap, no second stream at all.
import { describe, expect, it } from 'vitest';
import { GradientBuckets, NcclCommunicator } from '../../src/distributed/index.js';
import { Tensor } from '../../src/tensor/index.js';

const cudaLike = (values: number[]): Tensor => Object.defineProperty(Tensor.from(values), 'device', { value: 'cuda' });

function setup(size = 1, rank = 0) {
  const params = { a: cudaLike([1, 2, 3, 4]), b: cudaLike([5, 6, 7, 8]), c: cudaLike([9, 10, 11, 12]) };
  const nameOf = (t: Tensor): string => Object.entries(params).find(([, p]) => p.grad === t)?.[0] ?? '?';
  const log: string[] = [];
  const nccl = Object.create(NcclCommunicator.prototype) as NcclCommunicator;
  Object.defineProperties(nccl, { rank: { value: rank }, size: { value: size } });
  Object.assign(nccl, {
    order: (after: string) => log.push(`order:${after}`),
    useCommStream: (on: boolean) => log.push(on ? 'comm-stream' : 'process-stream'),
    group: (f: () => void) => {
      log.push('(');
      f();
      log.push(')');
    },
    allReduceAsync: (t: Tensor, op: string) => log.push(`all-reduce ${nameOf(t)} ${op}`),
    reduceAsync: (t: Tensor, root: number, op: string) => log.push(`reduce ${nameOf(t)} ${op} -> ${root}`),
    synchronize: () => (log.push('sync'), 0),
    allReduceHost: () => log.push('flags'),
  });
  const grad = () => cudaLike([1, 1, 1, 1]);
  return { params, nccl, log, grad };
}

const group = (name: string, op = 'all-reduce', root = ''): string[] => ['(', `${op} ${name} mean${root}`, ')'];

describe('GradientBuckets over NCCL (host side)', () => {
  it('step 1 only watches; from step 2 each bucket is an NCCL group on the comm stream as backward makes it', () => {
    const { params: { a, b, c }, nccl, log, grad } = setup();
    const gb = new GradientBuckets([a, b, c], nccl, { bucketBytes: 16 }); // one parameter a bucket: [c], [b], [a]
    gb.arm();
    c.grad = grad();
    b.grad = grad();
    a.grad = grad();
    expect(log).toEqual([]);
    gb.finish();
    expect(log).toEqual(['flags', 'order:compute', 'comm-stream', ...group('c'), ...group('b'), ...group('a'), 'process-stream', 'order:comm', 'sync']);
    expect(gb.stats.overlapped).toBe(0);

    log.length = 0;
    for (const p of [a, b, c]) p.grad = null; // the trainer's zero-grad
    gb.arm();
    c.grad = grad();
    expect(log).toEqual(['order:compute', 'comm-stream', ...group('c'), 'process-stream']);
    b.grad = grad();
    a.grad = grad();
    gb.finish();
    expect(log.slice(6)).toEqual(['order:compute', 'comm-stream', ...group('b'), 'process-stream', 'order:compute', 'comm-stream', ...group('a'), 'process-stream', 'order:comm', 'sync']);
    expect(gb.stats.overlapped).toBe(3);
    expect(gb.stats.steps).toBe(2);
  });

  it('strictly in bucket order: a bucket that fills early waits for the ones before it', () => {
    const { params: { a, b, c }, nccl, log, grad } = setup();
    const gb = new GradientBuckets([a, b, c], nccl, { bucketBytes: 16 });
    gb.arm();
    c.grad = grad(), b.grad = grad(), a.grad = grad();
    gb.finish();
    log.length = 0;
    gb.arm();
    b.grad = grad(); // bucket 1 before bucket 0 (c)
    expect(log).toEqual([]);
    c.grad = grad();
    expect(log).toEqual(['order:compute', 'comm-stream', ...group('c'), ...group('b'), 'process-stream']);
  });

  it('a bucket whose gradient changed after it filled (a parameter used twice) goes after backward from then on', () => {
    const { params: { a, b, c }, nccl, log, grad } = setup();
    const gb = new GradientBuckets([a, b, c], nccl, { bucketBytes: 16 });
    gb.arm();
    c.grad = grad();
    b.grad = grad();
    b.grad.write(Float32Array.from([2, 2, 2, 2])); // more added into b after its bucket filled
    a.grad = grad();
    gb.finish();
    expect(gb.lateParameters).toBe(1);
    log.length = 0;
    gb.arm();
    c.grad = grad();
    b.grad = grad();
    a.grad = grad(); // after the late bucket: waits for it
    expect(log).toEqual(['order:compute', 'comm-stream', ...group('c'), 'process-stream']);
    gb.finish();
    expect(log.slice(6)).toEqual(['order:compute', 'comm-stream', ...group('b'), ...group('a'), 'process-stream', 'order:comm', 'sync']);
  });

  it('ZeRO-2: each gradient reduced to its owner in the bucket\'s group; the others\' freed after the synchronize', () => {
    const { params: { a, b, c }, nccl, log, grad } = setup(2, 0);
    const owner = new Map([[a, 0], [b, 1], [c, 0]]);
    const gb = new GradientBuckets([a, b, c], nccl, { owner: (p) => owner.get(p)! });
    gb.arm();
    c.grad = grad(), b.grad = grad(), a.grad = grad();
    gb.finish();
    // one bucket, by owner: rank 0's c, a, then rank 1's b
    expect(log).toEqual(['flags', 'order:compute', 'comm-stream', '(', 'reduce c mean -> 0', 'reduce a mean -> 0', 'reduce b mean -> 1', ')', 'process-stream', 'order:comm', 'sync']);
    expect(b.grad).toBeNull();
    expect(a.grad).not.toBeNull();
    expect(c.grad).not.toBeNull();
    expect(gb.stats.gradientBytes).toBe(2 * 16);
  });

  it('without overlap: all after backward on the process stream, no events', () => {
    const { params: { a, b, c }, nccl, log, grad } = setup();
    const gb = new GradientBuckets([a, b, c], nccl, { bucketBytes: 16, overlap: false });
    for (let step = 0; step < 2; step++) {
      log.length = 0;
      gb.arm();
      c.grad = grad(), b.grad = grad(), a.grad = grad();
      expect(log).toEqual([]);
      gb.finish();
      expect(log.filter((l) => l !== 'flags')).toEqual([...group('c'), ...group('b'), ...group('a'), 'sync']);
    }
  });
});
