// An engine's or a trainer's own CUDA stream (src/native/cuda-stream.ts, bindings/runtime.cpp). On a
// machine without a usable CUDA device there is none to make: create() gives null and the engine
// keeps the process stream (a CPU engine never asks). The binding refuses handles it did not make.
// On a GPU: a stream is made, run() makes it current and restores the previous one, also on a throw.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tensor, mul, sum } from '../src/tensor/index.js';
import { Trainer } from '../src/train/trainer.js';
import { CudaStream } from '../src/native/cuda-stream.js';
import { availableDevices } from '../src/native/devices.js';
import { addon } from '../src/native/loader.js';
import { describeDevices } from './helpers.js';

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
});

// What only a GPU has: a stream to make current (describeDevices skips it, saying why, elsewhere).
describeDevices('CudaStream on a GPU', [], () => {
  it('run() makes the stream current and the previous one current again, also on a throw', () => {
    const s = CudaStream.create()!;
    expect(s).not.toBeNull();
    expect(s.run(() => addon().setCurrentStream(0))).toBeGreaterThan(0); // inside: this stream was current
    expect(() => s.run(() => { throw new Error('boom'); })).toThrow('boom');
    expect(addon().setCurrentStream(0)).toBe(0); // after: the process stream again
    s.dispose();
    s.dispose();
  });

  it('a trainer runs its steps on a stream of its own and restores the process stream after', async () => {
    const w = Tensor.from(new Float32Array([1, 2, 3, 4]), [4], { requiresGrad: true, device: 'cuda' });
    const current: number[] = [];
    const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgpt-stream-'));
    try {
      const r = await new Trainer({
        parameters: () => [['w', w]], nextBatch: () => ({ tokens: new Int32Array(4) }), loss: () => ({ loss: sum(mul(w, w)) }),
        dataPosition: () => ({}), restoreDataPosition: () => {}, checkpointFiles: () => [], restoreCheckpoint: async () => {},
      }, {
        runDir, totalSteps: 2, configHash: 'stream', progress: null, logEvery: 1, checkpointEvery: 0,
        schedule: { kind: 'constant', lr: 0.1, warmupSteps: 0 },
        onMetrics: () => {
          const s = addon().setCurrentStream(0); // read the current stream, then put it back
          addon().setCurrentStream(s);
          current.push(s);
        },
      }).run();
      expect(r.status).toBe('completed');
      expect(current.length).toBeGreaterThan(0);
      expect(current.every((s) => s > 0)).toBe(true);
      expect(addon().setCurrentStream(0)).toBe(0);
    } finally {
      fs.rmSync(runDir, { recursive: true, force: true });
    }
  });
}, ['cuda']);
