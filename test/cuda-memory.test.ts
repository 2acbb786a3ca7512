// Device memory through the CUDA caching allocator (native/include/patentgpt/caching_allocator.h,
// whose bookkeeping native/test/test_caching_allocator.cpp checks on any machine). The GPU part
// runs where a GPU is present (scripts/gpu-check.sh).
import { describe, expect, it } from 'vitest';
import { Tensor, memoryStats, releaseCachedMemory, runtimeInfo } from '../src/tensor/index.js';
import { numbers } from './helpers.js';

const gpus = runtimeInfo().gpus.length;

describe('CUDA memory', () => {
  it('memoryStats reports the caching allocator (all zero without a GPU)', () => {
    const cuda = memoryStats().cuda;
    expect(cuda.reservedBytes).toBeTypeOf('number');
    expect(cuda.deviceAllocs).toBeTypeOf('number');
    if (gpus === 0) expect([cuda.liveBytes, cuda.cachedBytes, cuda.reservedBytes]).toEqual([0, 0, 0]);
  });

  it.skipIf(gpus === 0)('steady-state steps reuse cached device blocks (no cudaMalloc after the first)', () => {
    releaseCachedMemory();
    const step = () => {
      const a = Tensor.zeros([256, 1024], { device: 'cuda' });
      const b = Tensor.zeros([3000], { device: 'cuda' });
      a.dispose();
      b.dispose();
    };
    step();
    const before = memoryStats().cuda;
    for (let i = 0; i < 50; i++) step();
    const after = memoryStats().cuda;
    expect(after.deviceAllocs).toBe(before.deviceAllocs);
    expect(after.cachedBytes).toBeGreaterThanOrEqual(256 * 1024 * 4);
    releaseCachedMemory();
    expect(memoryStats().cuda.cachedBytes).toBe(0);
  });

  it.skipIf(gpus === 0)('zeroed device storage reads back as zeros, also when a block is reused', () => {
    const dirty = Tensor.full([4096], 7, { device: 'cpu' }).to('cuda');
    dirty.dispose(); // its block is cached with 7s in it
    const z = Tensor.zeros([4096], { device: 'cuda' });
    expect(numbers(z.to('cpu').toArray()).every((v) => v === 0)).toBe(true);
  });

  it.skipIf(gpus === 0)('an allocation beyond the device names the size instead of crashing', () => {
    expect(() => Tensor.empty([2 ** 40 / 4], { device: 'cuda' })).toThrow(/could not allocate 1099511627776 bytes/);
  });
});
