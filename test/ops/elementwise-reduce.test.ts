// Reductions and indexing along a dimension (sum/mean with keepdim, max with indices, softmax,
// log_softmax, gather, scatterAdd) against plain float64 loops and finite differences.
import { describe, expect, it } from 'vitest';
import { addon } from '../../src/native/loader.js';
import { Tensor, gather, logSoftmax, max, mean, scatterAdd, softmax, sum, sub } from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on, numbers } from '../helpers.js';

const SHAPE = [2, 3, 4];
const x = randomArray(24, 5);
// x[i, j, k] in float64, and the (outer, D, inner) split of SHAPE at a dimension.
const at = (i: number, j: number, k: number) => x[(i * 3 + j) * 4 + k]!;
function split(dim: number) {
  const outer = SHAPE.slice(0, dim).reduce((p, d) => p * d, 1);
  const inner = SHAPE.slice(dim + 1).reduce((p, d) => p * d, 1);
  return { outer, D: SHAPE[dim]!, inner };
}
const get = (o: number, d: number, j: number, D: number, inner: number) => x[(o * D + d) * inner + j]!;

describeDevices('sum / mean over a dimension', ['sumDimForward', 'sumDimBackward', 'sum'], (device) => {
  const dev = on(device);
  for (const dim of [0, 1, 2, -1]) {
    it(`dim ${dim}: values, keepdim shape, and gradients`, () => {
      const d = dim < 0 ? dim + 3 : dim;
      const { outer, D, inner } = split(d);
      const ref: number[] = [];
      for (let o = 0; o < outer; o++) for (let j = 0; j < inner; j++) {
        let s = 0;
        for (let k = 0; k < D; k++) s += get(o, k, j, D, inner);
        ref.push(s);
      }
      const t = dev.f32(x, SHAPE);
      const s = sum(t, dim);
      expect(s.shape).toEqual(SHAPE.filter((_, i) => i !== d));
      expectClose(s.toArray() as Float32Array, ref, 1e-6, 1e-5, `sum dim ${dim}`);
      const m = mean(t, dim, { keepdim: true });
      expect(m.shape).toEqual(SHAPE.map((v, i) => (i === d ? 1 : v)));
      expectClose(m.toArray() as Float32Array, ref.map((v) => v / D), 1e-6, 1e-5, `mean dim ${dim}`);
      dev.gradCheck((y) => sum(y, dim), [{ data: x, shape: SHAPE }]);
      dev.gradCheck((y) => mean(y, dim, { keepdim: true }), [{ data: x, shape: SHAPE }]);
    });
  }

  it('sum of everything and mean of everything still give one-element tensors', () => {
    const t = dev.f32(x, SHAPE);
    expect(sum(t).item()).toBeCloseTo(x.reduce((p, v) => p + v, 0), 5);
    expect(mean(t).item()).toBeCloseTo(x.reduce((p, v) => p + v, 0) / 24, 5);
  });

  it('a keepdim mean broadcasts back against its input (centering)', () => {
    dev.gradCheck((y) => sub(y, mean(y, -1, { keepdim: true })), [{ data: x, shape: SHAPE }]);
  });

  it('refuses a dim outside the rank, naming the op and the tensor', () => {
    expect(() => sum(dev.zeros([2, 3]), 2)).toThrow(/sum: dim 2 is outside f32\[2, 3\]/);
    expect(() => mean(dev.zeros([2, 3]), -3)).toThrow(/mean: dim -3/);
  });
});

describeDevices('max over a dimension', ['maxDimForward', 'scatterAdd'], (device) => {
  const dev = on(device);
  it('values, first indices on ties, NaN wins, and the gradient goes to the index', () => {
    for (const dim of [0, 1, 2]) {
      const { outer, D, inner } = split(dim);
      const vals: number[] = [];
      const idx: number[] = [];
      for (let o = 0; o < outer; o++) for (let j = 0; j < inner; j++) {
        let best = -Infinity, bi = 0;
        for (let k = 0; k < D; k++) if (get(o, k, j, D, inner) > best) (best = get(o, k, j, D, inner)), (bi = k);
        vals.push(best);
        idx.push(bi);
      }
      const { values, indices } = max(dev.f32(x, SHAPE), dim);
      expectClose(values.toArray() as Float32Array, Float32Array.from(vals), 0, 0, `max values dim ${dim}`);
      expect(numbers(indices.toArray())).toEqual(idx);
      dev.gradCheck((y) => max(y, dim, { keepdim: true }).values, [{ data: x, shape: SHAPE }], { eps: 1e-3 }); // x holds a near tie (0.003 apart)
    }
    const ties = max(dev.f32([1, 3, 3, NaN, 2, 2], [2, 3]), 1);
    expect(numbers(ties.indices.toArray())).toEqual([1, 0]);
    expect(numbers(ties.values.toArray())).toEqual([3, NaN]);
    expect(() => max(dev.zeros([2, 0]), 1)).toThrow(/max: dimension 1 of f32\[2, 0\] is empty/);
  });
});

describeDevices('softmax / log_softmax over the last dimension', ['softmaxForward', 'softmaxBackward', 'logSoftmaxForward', 'logSoftmaxBackward'], (device) => {
  const dev = on(device);
  it('match float64 references, stay finite for large logits, and pass finite differences', () => {
    const logits = randomArray(4 * 7, 9, 4);
    const ref: number[] = [];
    const refLog: number[] = [];
    for (let r = 0; r < 4; r++) {
      const row = logits.slice(r * 7, r * 7 + 7);
      const m = Math.max(...row);
      const z = row.reduce((p, v) => p + Math.exp(v - m), 0);
      for (const v of row) {
        ref.push(Math.exp(v - m) / z);
        refLog.push(v - m - Math.log(z));
      }
    }
    expectClose(softmax(dev.f32(logits, [4, 7])).toArray() as Float32Array, ref, 1e-7, 1e-5, 'softmax');
    expectClose(logSoftmax(dev.f32(logits, [2, 2, 7])).toArray() as Float32Array, refLog, 1e-5, 1e-5, 'log_softmax');
    expectClose(logSoftmax(dev.f32([1000, 0], [2])).toArray() as Float32Array, [0, -1000], 1e-6, 1e-6, 'no overflow');
    dev.gradCheck(softmax, [{ data: logits.slice(0, 12), shape: [3, 4] }], { eps: 1e-3 });
    dev.gradCheck(logSoftmax, [{ data: logits.slice(0, 12), shape: [3, 4] }], { eps: 1e-3 });
  });
});

describeDevices('gather / scatterAdd along a dimension', ['gatherForward', 'scatterAdd'], (device) => {
  const dev = on(device);
  const idx = (shape: number[], D: number, seed: number) =>
    dev.from(Int32Array.from(randomArray(shape.reduce((p, d) => p * d, 1), seed), (v) => Math.abs(Math.floor(v * 7)) % D), shape);

  for (const dim of [0, 1, 2]) {
    it(`dim ${dim}: gather picks, scatterAdd adds (repeats included), each the other's gradient`, () => {
      const { outer, D, inner } = split(dim);
      const K = 5;
      const ishape = SHAPE.map((v, i) => (i === dim ? K : v));
      const index = idx(ishape, D, 40 + dim);
      const iv = index.toArray() as Int32Array;
      const g = gather(dev.f32(x, SHAPE), dim, index);
      expect(g.shape).toEqual(ishape);
      const ref = new Float64Array(iv.length);
      for (let o = 0; o < outer; o++) for (let k = 0; k < K; k++) for (let j = 0; j < inner; j++) {
        const r = (o * K + k) * inner + j;
        ref[r] = get(o, iv[r]!, j, D, inner);
      }
      expectClose(g.toArray() as Float32Array, Float32Array.from(ref), 0, 0, `gather dim ${dim}`);
      dev.gradCheck((y) => gather(y, dim, index), [{ data: x, shape: SHAPE }]);

      const src = randomArray(iv.length, 50 + dim);
      const out = scatterAdd(dev.f32(x, SHAPE), dim, index, dev.f32(src, ishape));
      const refS = Float64Array.from(x);
      for (let o = 0; o < outer; o++) for (let k = 0; k < K; k++) for (let j = 0; j < inner; j++) {
        const r = (o * K + k) * inner + j;
        refS[(o * D + iv[r]!) * inner + j] += src[r]!;
      }
      expectClose(out.toArray() as Float32Array, refS, 1e-6, 1e-5, `scatterAdd dim ${dim}`);
      dev.gradCheck((y, s) => scatterAdd(y, dim, index, s), [{ data: x, shape: SHAPE }, { data: src, shape: ishape }]);
    });
  }

  it('refuses indices out of range (in the binding), of the wrong dtype or shape', () => {
    const t = dev.f32(x, SHAPE);
    expect(() => gather(t, 1, dev.from(Int32Array.from({ length: 8 }, (_, i) => (i === 5 ? 3 : 0)), [2, 1, 4]))).toThrow(/gatherForward: index\[5\] = 3 is outside \[0, 3\)/);
    expect(() => gather(t, 1, dev.zeros([2, 1, 4]))).toThrow(/gather: index is f32\[2, 1, 4\], expected dtype i32/);
    expect(() => gather(t, 1, dev.from(new Int32Array(6), [2, 1, 3]))).toThrow(/gather: index i32\[2, 1, 3\] must match f32\[2, 3, 4\] in every dimension but 1/);
    expect(() => scatterAdd(t, 0, dev.from(new Int32Array(12), [1, 3, 4]), dev.zeros([1, 3, 5]))).toThrow(/scatterAdd: src is f32\[1, 3, 5\], expected shape \[1, 3, 4\]/);
    const dst = dev.zeros([4]);
    const bad = dev.from(Int32Array.from([0, -1]), [2]);
    expect(() => addon().scatterAdd(dst.storage, 0, dst.storage, 0, bad.storage, 0, 1, 4, 2, 1)).toThrow(/scatterAdd: index\[1\] = -1/);
  });
});
