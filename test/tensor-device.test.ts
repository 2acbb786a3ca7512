// Tensor-level helpers that replace storage access outside src/tensor: Tensor.empty({ like }),
// partial Tensor.write/read, copyRows, gatherRows (and its prepared form), and the same-device
// check that names the op and both devices.
import { describe, expect, it } from 'vitest';
import {
  Tensor, copyRows, embedding, gatherRows, prepareGatherRows, runtimeInfo, sum, linear,
} from '../src/tensor/index.js';
import { expectKernel, expectSameDevice } from '../src/tensor/check.js';

const hasCuda = (() => {
  const info = runtimeInfo();
  return info.cudaCompiled && info.gpus.length > 0;
})();

describe('tensor rows and devices', () => {
  it('Tensor.empty({ like }) takes dtype and device from another tensor; explicit options win', () => {
    const i = Tensor.zeros([3], { dtype: 'i32' });
    const a = Tensor.empty([2, 2], { like: i });
    expect([a.dtype, a.device]).toEqual(['i32', 'cpu']);
    const b = Tensor.empty([2], { like: i, dtype: 'f32' });
    expect(b.dtype).toBe('f32');
    for (const t of [i, a, b]) t.dispose();
  });

  it('write(data, at) and read(into, at) touch only the given elements of a reused buffer', () => {
    const t = Tensor.zeros([6], { dtype: 'i32' });
    t.write(Int32Array.of(7, 8), 3);
    expect([...(t.toArray() as Int32Array)]).toEqual([0, 0, 0, 7, 8, 0]);
    const into = new Int32Array(2);
    expect(t.read(into, 3)).toBe(into);
    expect([...into]).toEqual([7, 8]);
    expect(() => t.write(Int32Array.of(1, 2), 5)).toThrow(/write: 2 values at element 5 into i32\[6\]/);
    expect(() => t.read(new Int32Array(7))).toThrow(/read: 7 values/);
    expect(() => t.read(new Float32Array(2))).toThrow(/Float32Array for i32\[6\] \(needs Int32Array\)/);
    expect(() => t.write(Int32Array.of(1))).toThrow(/write: 1 values into/); // without `at`: every element
    t.dispose();
  });

  it('copyRows copies blocks of first-dimension rows, within one tensor too, and refuses what does not fit', () => {
    const a = Tensor.from(Float32Array.from({ length: 12 }, (_, i) => i), [4, 3]);
    const b = Tensor.zeros([3, 3]);
    copyRows(b, 1, a, 2, 2);
    expect([...(b.toArray() as Float32Array)]).toEqual([0, 0, 0, 6, 7, 8, 9, 10, 11]);
    copyRows(a, 0, a, 3, 1); // a cache block copied over another (copy-on-write)
    expect([...(a.toArray() as Float32Array)].slice(0, 3)).toEqual([9, 10, 11]);
    expect(() => copyRows(b, 2, a, 0, 2)).toThrow(/copyRows: 2 rows from dstRow 2 fall outside f32\[3, 3\]/);
    expect(() => copyRows(Tensor.zeros([2, 4]), 0, a, 0, 1)).toThrow(/rows of dst f32\[2, 4\] and src f32\[4, 3\] differ/);
    expect(() => copyRows(Tensor.zeros([2, 3], { dtype: 'i32' }), 0, a, 0, 1)).toThrow(/differ in dtype/);
    a.dispose();
    b.dispose();
  });

  it('gatherRows picks rows of any shape at ids; its gradient scatter-adds into the source', () => {
    const src = Tensor.from(Float32Array.from({ length: 12 }, (_, i) => i), [3, 2, 2]);
    src.requiresGrad = true;
    const ids = Tensor.from(Int32Array.of(2, 0, 2), [3], { dtype: 'i32' });
    const out = gatherRows(src, ids);
    expect(out.shape).toEqual([3, 2, 2]);
    expect([...(out.toArray() as Float32Array)]).toEqual([8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11]);
    sum(out).backward();
    expect([...(src.grad!.toArray() as Float32Array)]).toEqual([1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2]);
    // The rank-2 case is the embedding lookup.
    const table = Tensor.randn([5, 3], { seed: 1 });
    const ids2 = Tensor.from(Int32Array.of(4, 1), [2], { dtype: 'i32' });
    expect(gatherRows(table, ids2).toArray()).toEqual(embedding(ids2, table).toArray());
    expect(() => gatherRows(table, Tensor.from(Int32Array.of(5), [1], { dtype: 'i32' }))).toThrow(/id 5 at position 0 is outside \[0, V = 5\)/);
    for (const t of [src, ids, out, table, ids2]) t.dispose();
  });

  it('prepareGatherRows fills the first n rows of a buffer, checked once', () => {
    const table = Tensor.randn([6, 4], { seed: 2 });
    const ids = Tensor.from(Int32Array.of(5, 0, 3, 3), [4], { dtype: 'i32' });
    const out = Tensor.zeros([4, 4]);
    const gather = prepareGatherRows(out, table, ids);
    gather(2);
    const want = gatherRows(table, ids.narrow(0, 2)).toArray() as Float32Array;
    const got = out.toArray() as Float32Array;
    expect([...got.subarray(0, 8)]).toEqual([...want]);
    expect([...got.subarray(8)]).toEqual(new Array(8).fill(0));
    expect(() => gather(5)).toThrow(/gatherRows: 5 rows exceed the prepared 4/);
    expect(() => prepareGatherRows(Tensor.zeros([4, 3]), table, ids)).toThrow(/rows of out f32\[4, 3\] and src f32\[6, 4\] differ/);
    for (const t of [table, ids, out]) t.dispose();
  });

  it('expectSameDevice names the op, both tensors and both devices', () => {
    const cpu = Tensor.zeros([2]);
    // A stand-in for a tensor on the GPU (only its device and description are read).
    const gpu = { device: 'cuda', describe: () => 'f32[2] cuda' } as unknown as Tensor;
    expect(() => expectSameDevice('someOp', { x: cpu, weight: gpu })).toThrow(/someOp: x is on cpu and weight on cuda \(x f32\[2\], weight f32\[2\] cuda\)/);
    expect(() => expectSameDevice('someOp', { x: cpu, bias: null, y: cpu })).not.toThrow();
    // An op names the device mismatch before the missing kernel.
    expect(() => expectKernel('rmsnorm', 'rmsnormForward', cpu, gpu)).toThrow(/rmsnorm: input 0 is on cpu and input 1 on cuda/);
    // (minhash is a text kernel, CPU only: rmsnorm has a CUDA kernel now)
    expect(() => expectKernel('minhash', 'minhashSignatures', gpu, gpu)).toThrow(/minhash: no cuda kernel yet/);
    cpu.dispose();
  });

  it.skipIf(!hasCuda)('ops refuse inputs on two devices by name (CUDA)', () => {
    const table = Tensor.randn([4, 3], { seed: 3 }).to('cuda');
    const ids = Tensor.from(Int32Array.of(1), [1], { dtype: 'i32' });
    expect(() => embedding(ids, table)).toThrow(/embedding: ids is on cpu and table on cuda/);
    const a = Tensor.zeros([2, 3]);
    expect(() => copyRows(a, 0, table, 0, 1)).toThrow(/copyRows: dst is on cpu and src on cuda/);
    expect(Tensor.empty([1], { like: table }).device).toBe('cuda');
    for (const t of [table, ids, a]) t.dispose();
  });

  it.skipIf(hasCuda)("asking for 'cuda' without CUDA is E_DEVICE with what is missing", () => {
    expect(() => Tensor.zeros([2], { device: 'cuda' })).toThrow(/cannot use device 'cuda': (the native binary was built without CUDA|no CUDA GPU was found)/);
    const t = Tensor.zeros([2]);
    expect(() => t.to('cuda')).toThrow(/cannot use device 'cuda'/);
    expect(() => linear(t.reshape([1, 2]), Tensor.zeros([1, 2]))).not.toThrow();
    t.dispose();
  });
});
