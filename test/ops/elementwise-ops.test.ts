// Pointwise ops (sub, mul, div, minimum, maximum, add with broadcasting; neg, exp, log, sigmoid,
// logsigmoid, clamp; where) against plain float64 loops, finite differences, and the errors
// that name the op and the shapes.
import { describe, expect, it } from 'vitest';
import { addon } from '../../src/native/loader.js';
import {
  Tensor, add, clamp, div, exp, log, logsigmoid, maximum, minimum, mul, neg, sigmoid, sub, sum, where,
} from '../../src/tensor/index.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on, numbers } from '../helpers.js';

type Bin = (a: Tensor, b: Tensor) => Tensor;
const REF: Record<string, [Bin, (x: number, y: number) => number]> = {
  add: [add, (x, y) => x + y],
  sub: [sub, (x, y) => x - y],
  mul: [mul, (x, y) => x * y],
  div: [div, (x, y) => x / y],
  minimum: [minimum, (x, y) => Math.min(x, y)],
  maximum: [maximum, (x, y) => Math.max(x, y)],
};

// Broadcast in float64 the NumPy way (the reference for every shape pair below).
function refBinary(f: (x: number, y: number) => number, a: Float64Array, as: number[], b: Float64Array, bs: number[]) {
  const rank = Math.max(as.length, bs.length);
  const pad = (s: number[]) => [...Array(rank - s.length).fill(1), ...s];
  const pa = pad(as), pb = pad(bs);
  const out = pa.map((d, i) => Math.max(d, pb[i]!));
  const n = out.reduce((p, d) => p * d, 1);
  const idx = (s: number[], coord: number[]) => coord.reduce((acc, c, i) => acc * s[i]! + (s[i] === 1 ? 0 : c), 0);
  const res = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const coord: number[] = [];
    let r = i;
    for (let d = rank - 1; d >= 0; d--) {
      coord.unshift(r % out[d]!);
      r = Math.floor(r / out[d]!);
    }
    res[i] = f(a[idx(pa, coord)]!, b[idx(pb, coord)]!);
  }
  return { out, res };
}

// Operand pairs: same shape, trailing shape, scalar both sides, a keepdim column, a (1, C) row,
// and both operands broadcast at once.
const SHAPES: [number[], number[]][] = [
  [[3, 4], [3, 4]],
  [[2, 3, 4], [4]],
  [[2, 3, 4], [3, 4]],
  [[3, 4], [1]],
  [[], [2, 5]],
  [[3, 4], [3, 1]],
  [[3, 4], [1, 4]],
  [[3, 1], [1, 4]],
];

const positive = (n: number, seed: number) => randomArray(n, seed).map((v) => 0.5 + Math.abs(v));
const size = (s: number[]) => s.reduce((p, d) => p * d, 1);

describeDevices('binary ops with broadcasting', ['binaryForward', 'binaryBackward', 'sumBroadcast', 'addForward'], (device) => {
  const dev = on(device);
  for (const [name, [op, f]] of Object.entries(REF)) {
    it(`${name} matches a float64 reference over every broadcast pattern`, () => {
      SHAPES.forEach(([as, bs], k) => {
        const a = randomArray(size(as), 10 + k);
        const b = name === 'div' ? positive(size(bs), 20 + k) : randomArray(size(bs), 20 + k);
        const { out, res } = refBinary(f, a, as, b, bs);
        const ta = dev.f32(a, as), tb = dev.f32(b, bs);
        const y = op(ta, tb);
        expect(y.shape, `${name} ${as} x ${bs}`).toEqual(out);
        expectClose(y.toArray() as Float32Array, res, 1e-6, 1e-5, `${name} [${as}] x [${bs}]`);
        [ta, tb, y].forEach((t) => t.dispose());
      });
    });

    it(`${name} gradients match finite differences, broadcast operands summed back`, () => {
      for (const [as, bs] of [[[2, 3], [2, 3]], [[2, 3, 4], [4]], [[3, 4], [3, 1]], [[1], [2, 3]]] as [number[], number[]][]) {
        const a = randomArray(size(as), 31);
        const b = name === 'div' ? positive(size(bs), 32) : randomArray(size(bs), 32).map((v) => v + 0.3); // away from ties
        dev.gradCheck(op, [{ data: a, shape: as }, { data: b, shape: bs }]);
      }
    });
  }

  it('minimum/maximum split the gradient on ties and propagate NaN, as torch', () => {
    const a = dev.f32([1, 2, NaN], [3], true);
    const b = dev.f32([1, 3, 0], [3], true);
    const y = maximum(a, b);
    expect(numbers(y.toArray())).toEqual([1, 3, NaN]);
    sum(mul(y, dev.f32([1, 1, 0], [3]))).backward();
    expect(numbers(a.grad!.toArray())).toEqual([0.5, 0, 0]);
    expect(numbers(b.grad!.toArray())).toEqual([0.5, 1, 0]);
  });

  it('refuses shapes that do not broadcast, or need two blocks, naming the op and the shapes', () => {
    const a = dev.zeros([2, 3, 4]);
    expect(() => mul(a, dev.zeros([5]))).toThrow(/mul: shapes f32\[2, 3, 4\], f32\[5\] do not broadcast/);
    expect(() => sub(a, dev.zeros([2, 1, 4]))).toThrow(/sub: f32\[2, 1, 4\].*\[2, 3, 4\].*middle dimension/);
    expect(() => div(a, dev.zeros([4], { dtype: 'i32' }))).toThrow(/div: b is i32\[4\], expected dtype f32/);
  });
});

describeDevices('unary ops', ['unaryForward', 'unaryBackward'], (device) => {
  const dev = on(device);
  const x = randomArray(50, 7, 3);
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const CASES: [string, (t: Tensor) => Tensor, (v: number) => number, Float64Array][] = [
    ['neg', neg, (v) => -v, x],
    ['exp', exp, Math.exp, x],
    ['log', log, Math.log, positive(50, 8)],
    ['sigmoid', sigmoid, sig, x],
    ['logsigmoid', logsigmoid, (v) => Math.log(sig(v)), x],
    ['clamp', (t) => clamp(t, -1, 0.5), (v) => Math.min(Math.max(v, -1), 0.5), x],
  ];
  for (const [name, op, f, data] of CASES) {
    it(`${name} matches a float64 reference and finite differences`, () => {
      const t = dev.f32(data, [5, 10]);
      const y = op(t);
      expectClose(y.toArray() as Float32Array, data.map(f), 1e-6, 2e-6, name);
      [t, y].forEach((v) => v.dispose());
      // Finite differences away from clamp's kinks.
      const probe = data.slice(0, 12).map((v) => (name === 'clamp' && (Math.abs(v + 1) < 0.05 || Math.abs(v - 0.5) < 0.05) ? v + 0.2 : v));
      dev.gradCheck(op, [{ data: probe, shape: [3, 4] }], { eps: 1e-3 });
    });
  }

  it('logsigmoid and sigmoid stay finite for large |x| (where log(sigmoid(x)) in f32 is not)', () => {
    const t = dev.f32([-200, -30, 0, 30, 200], [5]);
    expectClose(logsigmoid(t).toArray() as Float32Array, [-200, -30, -Math.log(2), -9.357623e-14, 0], 1e-6, 1e-6);
    expectClose(sigmoid(t).toArray() as Float32Array, [0, 9.357623e-14, 0.5, 1, 1], 1e-12, 1e-6);
  });

  it('clamp refuses bounds that are NaN or crossed', () => {
    expect(() => clamp(dev.zeros([2]), 1, 0)).toThrow(/clamp: bounds \[1, 0\]/);
  });
});

describeDevices('where', ['whereForward', 'whereBackward'], (device) => {
  const dev = on(device);
  it('selects with broadcasting and routes each gradient to its branch', () => {
    const cond = dev.from(Int32Array.from([1, 0, 0, 1, 1, 0]), [2, 3]);
    const a = randomArray(6, 3);
    const b = randomArray(3, 4);
    const y = where(cond, dev.f32(a, [2, 3]), dev.f32(b, [3]));
    const c = [1, 0, 0, 1, 1, 0];
    expectClose(y.toArray() as Float32Array, Float32Array.from(c, (v, i) => (v ? a[i]! : b[i % 3]!)), 0, 0);
    dev.gradCheck((x, z) => where(cond, x, z), [{ data: a, shape: [2, 3] }, { data: b, shape: [3] }]);
    expect(() => where(dev.zeros([2, 3]), dev.f32(a, [2, 3]), dev.f32(a, [2, 3]))).toThrow(/where: cond is f32\[2, 3\], expected dtype i32/);
    expect(() => where(dev.from(Int32Array.from([1, 0, 1])), dev.f32(a, [2, 3]), dev.f32(a, [2, 3]))).toThrow(/where: cond i32\[3\] must have the output's shape \[2, 3\]/);
  });
});

describe('pointwise bindings refuse bad calls', () => {
  it('a broadcast pattern that does not tile n, an unknown op, and out-of-bounds operands', () => {
    const s = (n: number) => Tensor.zeros([n]);
    const [o, a, b] = [s(12), s(12), s(5)];
    const A = addon();
    expect(() => A.binaryForward(o.storage, 0, a.storage, 0, b.storage, 0, 12, 12, 1, 5, 1, 2)).toThrow(/binaryForward: b: broadcast size 5/);
    expect(() => A.binaryForward(o.storage, 0, a.storage, 0, b.storage, 0, 12, 12, 1, 12, 1, 2)).toThrow(/binaryForward: b needs 12 elements/);
    expect(() => A.binaryForward(o.storage, 0, a.storage, 0, a.storage, 0, 12, 12, 1, 12, 1, 9)).toThrow(/unknown binary op 9/);
    expect(() => A.unaryBackward(o.storage, 0, a.storage, 0, null, 0, null, 0, 12, 1, 0, 0)).toThrow(/unaryBackward: .*reads the forward's out/);
  });
});
