// Index checks of attention, paged attention and MoE on CUDA run on the device, without reading
// the indices back (native/cuda/index_check.cu, patentgpt/cuda_index_check.h): a call with a bad
// cu_seqlens, slot mapping, expert id or permutation returns at once (the old host check read the
// tensor back, a stream sync per call, and threw there), its kernels leave the outputs untouched,
// and the next read from the device throws an error naming the op, the argument and the value.
// The CPU path still checks in place and throws at the call. The CUDA cases run where a GPU is
// present (scripts/gpu-check.sh); elsewhere they are skipped with a message, and the device side
// is covered by native/test/test_cuda_index_check.cpp under scripts/cuda-emulate.sh.
import { describe, expect, it } from 'vitest';
import { addon } from '../src/native/loader.js';
import { Tensor, attention } from '../src/tensor/index.js';
import { describeDevices } from './helpers.js';


/** The error fn throws (fails the test when it does not). */
function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

const ints = (xs: number[], device: 'cpu' | 'cuda'): Tensor => Tensor.from(Int32Array.from(xs), [xs.length], { dtype: 'i32', device });

describe('index checks on the cpu (unchanged: checked at the call)', () => {
  it('a bad cuSeqlens tensor throws at the call, naming the op and the value', () => {
    const T = 10, H = 2, D = 8;
    const q = Tensor.zeros([T, H, D]);
    const cu = ints([0, 4, 8], 'cpu');
    const err = thrown(() => attention(q, q, q, { cuSeqlens: cu }));
    expect(err.message).toMatch(/^attention: cuSeqlens\[2\] = 8 must equal T = 10/);
    expect(err.code).toBe('E_NATIVE_ARG');
  });
});

describeDevices('device index checks', ['attentionForward', 'pagedKvStore', 'moeDispatch'], () => {
  it('attention: the call returns, the next read names the op and cuSeqlens; a good call runs after', () => {
    const T = 10, H = 2, D = 64;
    const q = Tensor.from(new Float32Array(T * H * D).fill(0.5), [T, H, D]).to('cuda');
    const bad = ints([0, 4, 8], 'cuda');
    const out = attention(q, q, q, { cuSeqlens: bad, causal: true }); // no read-back: no throw here
    const err = thrown(() => out.toArray());
    expect(err.message).toMatch(/attention: cuSeqlens\[2\] = 8 must equal T = 10/);
    // The read reports it as the bad argument it is (errors.h DeviceErrorCode), not a device fault.
    expect(err.code).toBe('E_NATIVE_ARG');
    const good = ints([0, 4, 10], 'cuda');
    const ok = attention(q, q, q, { cuSeqlens: good, causal: true });
    const values = ok.toArray() as Float32Array;
    expect(values.every((x) => x === 0.5)).toBe(true); // softmax over equal values of 0.5
    for (const t of [q, bad, out, good, ok]) t.dispose();
  });

  it('pagedKvStore: a slot outside the cache is named at the next read, and the cache is untouched', () => {
    const A = addon();
    const numBlocks = 2, blockSize = 4, Hkv = 1, D = 4, T = 3;
    const cache = Tensor.from(new Float32Array(numBlocks * blockSize * Hkv * D).fill(7), [numBlocks * blockSize * Hkv * D]).to('cuda');
    const vcache = Tensor.from(new Float32Array(numBlocks * blockSize * Hkv * D).fill(7), [numBlocks * blockSize * Hkv * D]).to('cuda');
    const kv = Tensor.from(new Float32Array(T * Hkv * D).fill(1), [T * Hkv * D]).to('cuda');
    const slots = ints([0, 8, 1], 'cuda'); // 8 = numBlocks * blockSize: one past the end
    A.pagedKvStore(cache.storage, 0, vcache.storage, 0, kv.storage, 0, kv.storage, 0, slots.storage, 0, T, Hkv, D, numBlocks, blockSize);
    const err = thrown(() => cache.toArray());
    expect(err.message).toMatch(/pagedKvStore: slotMapping\[1\] = 8 is outside \[-1, 8\)/);
    expect(Array.from(cache.toArray() as Float32Array).every((x) => x === 7)).toBe(true); // the store halted
    for (const t of [cache, vcache, kv, slots]) t.dispose();
  });

  it('moe dispatch: an expert id out of range is named at the next read, the outputs untouched', () => {
    const A = addon();
    const M = 6, E = 4;
    const order = ints(new Array<number>(M).fill(-7), 'cuda');
    const slotPos = ints(new Array<number>(M).fill(-7), 'cuda');
    const offsets = ints(new Array<number>(E + 1).fill(-7), 'cuda');
    const indices = ints([0, 1, 2, 7, 3, -1], 'cuda');
    A.moeDispatch(order.storage, 0, slotPos.storage, 0, offsets.storage, 0, indices.storage, 0, M, E);
    const err = thrown(() => offsets.toArray());
    expect(err.message).toMatch(/moe dispatch: expert 7 at slot 3 is outside \[0, E = 4\)/);
    expect(Array.from(offsets.toArray() as Int32Array)).toEqual(new Array<number>(E + 1).fill(-7));
    for (const t of [order, slotPos, offsets, indices]) t.dispose();
  });
}, ['cuda']);
