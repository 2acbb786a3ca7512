// An engine's or a trainer's own CUDA stream (src/native/cuda-stream.ts, bindings/runtime.cpp). On a
// machine without a usable CUDA device there is none to make: create() gives null and the engine
// keeps the process stream (a CPU engine never asks). The binding refuses handles it did not make.
// On a GPU: a stream is made, run() makes it current and restores the previous one, also on a throw.
import { describe, expect, it } from 'vitest';
import { CudaStream } from '../src/native/cuda-stream.js';
import { availableDevices } from '../src/native/devices.js';
import { addon } from '../src/native/loader.js';

const cuda = availableDevices().includes('cuda');

describe('CudaStream', () => {
  it.skipIf(cuda)('without a usable CUDA device: no stream (null), and no error', () => {
    expect(addon().cudaStreamCreate()).toBe(0);
    expect(CudaStream.create()).toBeNull();
  });

  it('setCurrentStream takes 0 (the process stream) and refuses a handle it did not make', () => {
    expect(addon().setCurrentStream(0)).toBe(0);
    expect(() => addon().setCurrentStream(7)).toThrow(expect.objectContaining({ code: 'E_NATIVE_ARG', message: expect.stringMatching(/stream 7 is not a live CUDA stream/) }));
    expect(() => addon().cudaStreamRelease(7)).toThrow(expect.objectContaining({ code: 'E_NATIVE_ARG' }));
  });

  it.skipIf(!cuda)('on a GPU: run() makes the stream current and the previous one current again, also on a throw', () => {
    const s = CudaStream.create()!;
    expect(s).not.toBeNull();
    expect(s.run(() => addon().setCurrentStream(0))).toBeGreaterThan(0); // inside: this stream was current
    expect(() => s.run(() => { throw new Error('boom'); })).toThrow('boom');
    expect(addon().setCurrentStream(0)).toBe(0); // after: the process stream again
    s.dispose();
    s.dispose();
  });
});
