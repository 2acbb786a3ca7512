import { describe, expect, it } from 'vitest';
import { addon } from '../../src/native/loader.js';
import { Tensor, crossEntropy, logprobs } from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';
import { crossEntropyBackwardRef, crossEntropyRef, logprobsRef } from '../reference/kernels.js';


describeDevices('crossEntropy', ['crossEntropyForward', 'crossEntropyBackward'], (device) => {
  const dev = on(device);
  it('matches per-target losses and ignores ignoreIndex, with large logits', () => {
    const N = 6, V = 1001;
    const ld = randomArray(N * V, 1, 5);
    ld[2 * V + 7] = 80; // a dominant logit: needs the max subtraction
    ld[3 * V] = -1e4;
    const t = [7, 1000, 7, 0, -100, 500];
    const logits = dev.f32(ld, [2, 3, V]);
    const targets = dev.i32(t, [2, 3]);
    const loss = crossEntropy(logits, targets, { reduction: 'none' });
    expect(loss.shape).toEqual([2, 3]);
    const ref = crossEntropyRef(Float32Array.from(ld), t, V);
    expectClose(loss.toArray() as Float32Array, ref, 2e-5, 2e-5);
    const flat = dev.i32(t);
    const lossFlat = crossEntropy(logits, flat, { reduction: 'none' });
    expect(lossFlat.shape).toEqual([6]);
    expectClose(lossFlat.toArray() as Float32Array, ref, 2e-5, 2e-5);
    [flat, lossFlat].forEach((x) => x.dispose());
    const mean = crossEntropy(logits, targets);
    expect(mean.item()).toBeCloseTo(ref.reduce((a, b) => a + b, 0) / 5, 4);
    const sum = crossEntropy(logits, targets, { reduction: 'sum' });
    expect(sum.item()).toBeCloseTo(ref.reduce((a, b) => a + b, 0), 3);
    [logits, targets, loss, mean, sum].forEach((x) => x.dispose());
  });

  it('honours a custom ignoreIndex and gives NaN for a mean over nothing (as torch)', () => {
    const logits = dev.f32(randomArray(6, 2), [2, 3]);
    const targets = dev.i32([2, 2]);
    expect(Number.isNaN(crossEntropy(logits, targets, { ignoreIndex: 2 }).item())).toBe(true);
    const targets2 = dev.i32([1, 2]);
    const loss = crossEntropy(logits, targets2, { ignoreIndex: 2, reduction: 'none' }).toArray();
    expect(loss[1]).toBe(0);
    expect(loss[0]).toBeGreaterThan(0);
    [logits, targets, targets2].forEach((x) => x.dispose());
  });

  it('backward is dloss * (softmax - onehot) with ignored rows zero', () => {
    const N = 5, V = 37;
    const ld = randomArray(N * V, 3, 2);
    const t = [0, 36, -100, 5, 5];
    const logits = dev.f32(ld, [N, V], true);
    const targets = dev.i32(t);
    const dloss = randomArray(N, 4);
    crossEntropy(logits, targets, { reduction: 'none' }).backward(dev.f32(dloss, [N]));
    expectClose(logits.grad!.toArray() as Float32Array, crossEntropyBackwardRef(Float32Array.from(ld), t, dloss, V), 1e-6, 1e-5);
    [logits, targets].forEach((x) => x.dispose());
  });

  it('passes a finite-difference gradient check for each reduction', () => {
    for (const [N, V] of [[1, 1], [3, 5], [4, 17]] as const) {
      for (const reduction of ['mean', 'sum', 'none'] as const) {
        const targets = dev.i32(Array.from({ length: N }, (_, n) => (n === 1 ? -100 : (n * 3) % V)));
        dev.gradCheck((l) => crossEntropy(l!, targets, { reduction }),
          [{ data: randomArray(N * V, N + V), shape: [N, V] }, { data: [], shape: [], tensor: targets }], { eps: 1e-3 });
      }
    }
  });

  it('rejects targets outside the vocabulary and bad shapes, naming the op', () => {
    const logits = dev.f32(randomArray(6, 2), [2, 3]);
    const bad = dev.i32([1, 3]);
    expect(() => crossEntropy(logits, bad)).toThrow(/crossEntropy: target 3 at position 1 is outside \[0, V = 3\) and is not ignore_index -100/);
    const neg = dev.i32([-1, 0]);
    expect(() => crossEntropy(logits, neg)).toThrow(/crossEntropy: target -1 at position 0/);
    const wrong = dev.i32([1, 2, 0]);
    expect(() => crossEntropy(logits, wrong)).toThrow(/crossEntropy: logits f32\[2, 3\] need targets of shape \[2\]/);
    const ft = dev.f32([0, 1], [2]);
    expect(() => crossEntropy(logits, ft)).toThrow(/crossEntropy: targets is f32\[2\]/);
    const ok = dev.i32([0, 1]);
    expect(() => crossEntropy(logits, ok, { ignoreIndex: 1.5 })).toThrow(/crossEntropy: ignoreIndex/);
    [logits, bad, neg, wrong, ft, ok].forEach((x) => x.dispose());
  });
});

describeDevices('logprobs', ['logprobForward', 'logprobBackward'], (device) => {
  const dev = on(device);
  it('matches log_softmax gathered at ids', () => {
    const N = 7, V = 301;
    const ld = randomArray(N * V, 5, 4);
    const ids = Array.from({ length: N }, (_, n) => (n * 97) % V);
    const logits = dev.f32(ld, [N, V]);
    const idsT = dev.i32(ids);
    const out = logprobs(logits, idsT);
    expect(out.shape).toEqual([N]);
    expectClose(out.toArray() as Float32Array, logprobsRef(Float32Array.from(ld), ids, V), 2e-5, 2e-5);
    [logits, idsT, out].forEach((x) => x.dispose());
  });

  it('passes a finite-difference gradient check', () => {
    for (const [N, V] of [[1, 1], [2, 3], [3, 19]] as const) {
      const ids = dev.i32(Array.from({ length: N }, (_, n) => (n * 2) % V));
      dev.gradCheck((l) => logprobs(l!, ids), [{ data: randomArray(N * V, V), shape: [N, V] }, { data: [], shape: [], tensor: ids }], { eps: 1e-3 });
    }
  });

  it('rejects ids outside the vocabulary (no ignore index), naming the op', () => {
    const logits = dev.f32(randomArray(6, 2), [2, 3]);
    const bad = dev.i32([0, -100]);
    expect(() => logprobs(logits, bad)).toThrow(/logprobs: id -100 at position 1 is outside \[0, V = 3\)/);
    [logits, bad].forEach((x) => x.dispose());
  });

  it('refuses raw calls whose ids share memory with dlogits', () => {
    const a = addon();
    const s = new a.Storage(16 * 4, 'cpu', true);
    expect(() => a.logprobBackward(s, 0, s, 0, s, 0, s, 0, s, 4, 2, 4)).toThrow(/logprobs backward: ids share memory with dlogits/);
    expect(() => a.crossEntropyBackward(s, 0, s, 0, s, 0, s, 0, s, 4, 2, 4, -100))
      .toThrow(/crossEntropy backward: targets share memory with dlogits/);
    s.free();
  });
});
