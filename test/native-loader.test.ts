// src/native: named arguments placed by the declared layout, and the device registry.
import { describe, expect, it } from 'vitest';
import { availableDevices, hasKernel, kernelDevices, nativeSignatures } from '../src/native/devices.js';
import { addon, argIndex, packArgs } from '../src/native/loader.js';
import { Tensor } from '../src/tensor/index.js';

describe('packArgs / argIndex', () => {
  it('place named arguments where the declaration puts them (a tensor as storage, offset)', () => {
    const x = Tensor.zeros([2, 4]);
    const w = Tensor.zeros([4]);
    const out = Tensor.zeros([2, 4]);
    const rstd = Tensor.zeros([2]);
    const args = packArgs('rmsnormForward', { out, rstd, x, w, N: 2, C: 4, eps: 1e-5 });
    expect(args).toEqual([out.storage, out.offset, rstd.storage, rstd.offset, x.storage, x.offset, w.storage, w.offset, 2, 4, 1e-5]);
    addon().rmsnormForward(...args); // the native side agrees with the layout
    const grads = packArgs('binaryBackward', { da: null, db: x, dout: x, a: x, b: x, n: 8, aSize: 8, aInner: 1, bSize: 8, bInner: 1, op: 0 });
    expect(grads.slice(0, 4)).toEqual([null, 0, x.storage, x.offset]);
    [x, w, out, rstd].forEach((t) => t.dispose());
  });

  it('decodeLayer\'s step sizes sit where the old hand-counted indices put them (26, 48, 51)', () => {
    expect([argIndex('decodeLayer', 'M'), argIndex('decodeLayer', 'nseq'), argIndex('decodeLayer', 'maxPartitions')]).toEqual([26, 48, 51]);
    expect(argIndex('decodeLogits', 'M')).toBe(10);
    const sig = nativeSignatures().find((s) => s.name === 'decodeLayer')!;
    // a typed or any-dtype tensor (the quantized weights, the 16-bit KV caches) takes storage and offset
    expect(sig.params.reduce((n, p) => n + (/^(f32|i32|tensor)/.test(p.type) ? 2 : 1), 0)).toBe(71);
  });
});

describe('device registry', () => {
  it('lists cpu always, and each function\'s kernels from its binding\'s table', () => {
    expect(availableDevices()).toContain('cpu');
    const info = addon().info();
    expect(availableDevices().includes('cuda')).toBe(info.cudaCompiled && info.gpus.length > 0);
    // rmsnorm has a CUDA kernel where CUDA is compiled in; the text kernels are CPU only.
    expect(kernelDevices('rmsnormForward')).toEqual(info.cudaCompiled ? ['cpu', 'cuda'] : ['cpu']);
    expect(hasKernel('rmsnormForward', 'cpu')).toBe(true);
    expect(kernelDevices('minhashSignatures')).toEqual(['cpu']);
    expect(hasKernel('minhashSignatures', 'cuda')).toBe(false);
    expect(kernelDevices('noSuchFunction')).toEqual([]);
  });
});
