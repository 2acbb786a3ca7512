// Row-keyed dropout (src/nn/dropout-rows.ts): inside withDropoutRows a LoRA adapter's mask of a
// token is a function of (seed, step, global row, position, column) only, so a global row gets the
// same mask alone in a batch of 1 or inside a larger batch at another offset (as on another rank
// or micro-batch), and its gradient goes through that mask. The op's segments place runs of x at
// chosen stream positions, each run equal to a plain call at that offset.
import { expect, it } from 'vitest';
import { rowDropoutOptions, withDropoutRows, withDropoutRowSubset, type DropoutRowRun } from '../../src/nn/dropout-rows.js';
import { applyLora, LoraAdapter, loraLayers } from '../../src/nn/lora.js';
import { ForwardRecorder, SparseMoE } from '../../src/nn/index.js';
import { dropout, noGrad, Tensor } from '../../src/tensor/index.js';
import { describeDevices, f32, on, randomArray } from '../helpers.js';
import { splitmixU } from '../reference/kernels.js';

const IN = 24, OUT = 10, R = 4, P = 0.3, STRIDE = 16;

function adapter(seed = 5): LoraAdapter {
  const a = new LoraAdapter(IN, OUT, { r: R, alpha: 8, dropout: P, seed });
  a.lora_B.setParameter('weight', f32(randomArray(OUT * R, 3, 0.2), [OUT, R], true));
  return a;
}

/** The adapter's term and the gradient reaching x for tokens `xs` (tokens, IN) laid out as `runs` of step `step`. */
function run(a: LoraAdapter, xs: Float64Array, runs: DropoutRowRun[], step = 3): { y: Float32Array; dx: Float32Array } {
  const tokens = xs.length / IN;
  const x = f32(xs, [tokens, IN], true);
  const zero = Tensor.zeros([tokens, OUT]);
  const y = withDropoutRows({ step, stride: STRIDE, runs }, () => a.apply(x, zero));
  const g = f32(new Float64Array(tokens * OUT).fill(1), [tokens, OUT]);
  y.backward(g);
  const out = { y: y.toArray() as Float32Array, dx: x.grad!.toArray() as Float32Array };
  [x, y, g, zero].forEach((t) => t.dispose());
  return out;
}

it('a global row has the same mask alone in a batch of 1 as inside a larger batch at another offset, forward and backward', () => {
  const a = adapter();
  // global row 9: 11 tokens; it sits after row 4 (7 tokens) and before row 20 (5 tokens, from position 3)
  const row = randomArray(11 * IN, 1);
  const before = randomArray(7 * IN, 2), after = randomArray(5 * IN, 4);
  const alone = run(a, row, [{ row: 9, length: 11 }]);
  const big = new Float64Array(23 * IN);
  big.set(before, 0);
  big.set(row, 7 * IN);
  big.set(after, 18 * IN);
  const inside = run(a, big, [{ row: 4, length: 7 }, { row: 9, length: 11 }, { row: 20, length: 5, first: 3 }]);
  const slice = (v: Float32Array, cols: number): number[] => Array.from(v.subarray(7 * cols, 18 * cols));
  expect(slice(inside.y, OUT)).toEqual(Array.from(alone.y));
  expect(slice(inside.dx, IN)).toEqual(Array.from(alone.dx));
  expect(a.dropoutOffset, 'row-keyed masks leave the adapter\'s own stream alone').toBe(0);

  // the mask is dropout's at the row's place: stream position (row * stride) * IN of the step's seed
  const ones = new Float64Array(11 * IN).fill(1);
  const opts = rowDropoutOptions(5 + 0x5deece66d, { step: 3, stride: STRIDE, runs: [{ row: 9, length: 11 }] }, IN);
  expect(opts.segments).toEqual([{ start: 0, length: 11 * IN, offset: 9 * STRIDE * IN }]);
  const mask = noGrad(() => {
    const x = f32(ones, [11, IN]);
    const m = dropout(x, P, opts);
    const v = m.toArray() as Float32Array;
    [x, m].forEach((t) => t.dispose());
    return v;
  });
  let dropped = 0;
  for (let i = 0; i < mask.length; i++) {
    // the gradient reaching x is zero exactly where the row's input was dropped (B has no zero column)
    expect(alone.dx[i] === 0, `element ${i}`).toBe(mask[i] === 0);
    if (mask[i] === 0) dropped++;
  }
  expect(dropped).toBeGreaterThan(0.15 * mask.length);
  expect(dropped).toBeLessThan(0.45 * mask.length);

  // another step, another row or another adapter draws another mask
  expect(Array.from(run(a, row, [{ row: 9, length: 11 }], 4).y)).not.toEqual(Array.from(alone.y));
  expect(Array.from(run(a, row, [{ row: 10, length: 11 }]).y)).not.toEqual(Array.from(alone.y));
  const b = adapter(6);
  b.lora_A.setParameter('weight', f32(a.lora_A.weight.toArray() as Float32Array, [R, IN], true));
  expect(Array.from(run(b, row, [{ row: 9, length: 11 }]).y)).not.toEqual(Array.from(alone.y));
  a.dispose();
  b.dispose();
});

it('tokens computed alone (withDropoutRowSubset: a last layer past attention) get the masks they have in the full forward', () => {
  const a = adapter();
  const runs = [{ row: 3, length: 12 }, { row: 7, length: 8, first: 2 }];
  const xs = randomArray(20 * IN, 9);
  const full = run(a, xs, runs);
  const select = Int32Array.from([2, 3, 4, 11, 13, 15]);
  const sub = new Float64Array(select.length * IN);
  select.forEach((t, i) => sub.set(xs.subarray(t * IN, (t + 1) * IN), i * IN));
  const x = f32(sub, [select.length, IN], true);
  const zero = Tensor.zeros([select.length, OUT]);
  const idx = Tensor.from(select, [select.length], { dtype: 'i32' });
  const y = withDropoutRows({ step: 3, stride: STRIDE, runs }, () => withDropoutRowSubset(idx, () => a.apply(x, zero)));
  const got = Array.from(y.toArray() as Float32Array);
  select.forEach((t, i) => expect(got.slice(i * OUT, (i + 1) * OUT), `token ${t}`).toEqual(Array.from(full.y.subarray(t * OUT, (t + 1) * OUT))));
  expect(a.dropoutOffset).toBe(0);
  [x, y, zero, idx].forEach((t) => t.dispose());
  a.dispose();
});

it('an MoE expert\'s adapters key their row group by the tokens it came from: a token\'s output is the same alone or in a larger batch', () => {
  const C = 16, F = 24;
  let seed = 40;
  const moe = new SparseMoE({ dim: C, hiddenDim: F, numExperts: 4, topK: 2 }, (shape, kind) => (kind === 'ones' ? Tensor.full(shape, 1) : Tensor.randn(shape, { seed: seed++, std: 0.3 })));
  applyLora(moe, { r: 2, alpha: 4, dropout: 0.3, targetModules: ['w1', 'w2', 'w3'], seed: 3 });
  for (const [, l] of loraLayers(moe)) l.adapter.lora_B.setParameter('weight', f32(randomArray(l.outFeatures * 2, seed++, 0.3), [l.outFeatures, 2], true));
  const forward = (xs: Float64Array, runs: DropoutRowRun[]): number[] => {
    const n = xs.length / C;
    const x = f32(xs, [n, C], true);
    const rec = new ForwardRecorder();
    const y = withDropoutRows({ step: 1, stride: STRIDE, runs }, () => moe.forward(x, rec));
    const v = Array.from(y.toArray() as Float32Array);
    [x, y].forEach((t) => t.dispose());
    rec.dispose();
    return v;
  };
  const row = randomArray(6 * C, 21), other = randomArray(9 * C, 22);
  const alone = forward(row, [{ row: 9, length: 6 }]);
  const big = new Float64Array(15 * C);
  big.set(other, 0);
  big.set(row, 9 * C);
  const inside = forward(big, [{ row: 2, length: 9 }, { row: 9, length: 6 }]);
  expect(inside.slice(9 * C)).toEqual(alone);
  expect(loraLayers(moe).every(([, l]) => l.adapter.dropoutOffset === 0), 'no adapter fell back to its own stream').toBe(true);
  moe.dispose();
});

it('outside withDropoutRows, or when x is not the forward\'s tokens, the adapter keeps its own stream', () => {
  const a = adapter();
  const xs = randomArray(6 * IN, 7);
  const x = f32(xs, [6, IN], true);
  const zero = Tensor.zeros([6, OUT]);
  const y = a.apply(x, zero);
  expect(a.dropoutOffset).toBe(6 * IN);
  const y2 = withDropoutRows({ step: 0, stride: STRIDE, runs: [{ row: 0, length: 5 }] }, () => a.apply(x, zero)); // 5 tokens said, 6 rows
  expect(a.dropoutOffset).toBe(12 * IN);
  [x, y, y2, zero].forEach((t) => t.dispose());
  a.dispose();
});

it('refuses runs past the stride and segments that do not cover x', () => {
  expect(() => withDropoutRows({ step: 0, stride: 4, runs: [{ row: 0, length: 3, first: 2 }] }, () => 0)).toThrow(/pass the stride 4/);
  expect(() => withDropoutRows({ step: -1, stride: 4, runs: [] }, () => 0)).toThrow(/step must be an integer >= 0/);
  const x = f32(randomArray(8, 1), [2, 4]);
  expect(() => dropout(x, 0.5, { seed: 1, segments: [{ start: 0, length: 4, offset: 0 }] })).toThrow(/cover 4 elements, x has 8/);
  expect(() => dropout(x, 0.5, { seed: 1, segments: [{ start: 4, length: 4, offset: 0 }, { start: 0, length: 4, offset: 9 }] })).toThrow(/segment 0 must start at element 0/);
  expect(() => dropout(x, 0.5, { seed: 1, offset: 0, segments: [] })).toThrow(/offset or segments, not both/);
  // a segment equals a plain call at its offset; continuing segments equal one call
  const ones = f32(new Float64Array(64).fill(1), [64]);
  const at = (opts: Parameters<typeof dropout>[2]): number[] => noGrad(() => {
    const m = dropout(ones, 0.5, opts);
    const v = Array.from(m.toArray() as Float32Array);
    m.dispose();
    return v;
  });
  const whole = at({ seed: 1, offset: 40 });
  expect(at({ seed: 1, segments: [{ start: 0, length: 30, offset: 40 }, { start: 30, length: 34, offset: 70 }] })).toEqual(whole);
  // halves swapped in the stream: each half is the other half's mask
  expect(at({ seed: 1, segments: [{ start: 0, length: 32, offset: 72 }, { start: 32, length: 32, offset: 40 }] })).toEqual([...whole.slice(32), ...whole.slice(0, 32)]);
  [x, ones].forEach((t) => t.dispose());
});


describeDevices('dropout segments', ['dropoutForward', 'dropoutBackward'], (device) => {
  const dev = on(device);
  it('each run reads its own stream positions (the reference mask), forward and backward', () => {
    const p = 0.4, seed = 2030516476600842;
    const segments = [{ start: 0, length: 70, offset: 9 * 128 * 64 }, { start: 70, length: 0, offset: 5 }, { start: 70, length: 130, offset: 3 }];
    const xs = randomArray(200, 12);
    const x = dev.f32(xs, [200], true);
    const y = dropout(x, p, { seed, segments });
    const g = dev.f32(new Float64Array(200).fill(1), [200]);
    y.backward(g);
    const scale = Math.fround(1 / (1 - p));
    const keep = (i: number): boolean => splitmixU(seed, i < 70 ? segments[0]!.offset + i : 3 + i - 70) >= p;
    const want = Array.from({ length: 200 }, (_, i) => (keep(i) ? Math.fround(Math.fround(xs[i]!) * scale) : 0));
    expect(Array.from(y.toArray() as Float32Array)).toEqual(want);
    expect(Array.from(x.grad!.toArray() as Float32Array)).toEqual(Array.from({ length: 200 }, (_, i) => (keep(i) ? scale : 0)));
    [x, y, g].forEach((t) => t.dispose());
  });
});
