// Shared test helpers: closeness checks, random inputs, and the finite-difference gradient check
// that every differentiable op goes through (as tinygrad's helper_test_op does).
import { expect } from 'vitest';
import { Rng, Tensor, noGrad, clearTape } from '../src/tensor/index.js';

export function randomArray(n: number, seed: number, scale = 1): Float64Array {
  const rng = new Rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

/** max |a - b| <= atol + rtol * |b| elementwise, with a message that locates the worst element. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-4, what = 'values'): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    expect.fail(`${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (atol ${atol}, rtol ${rtol})`);
  }
}

export function f32(data: ArrayLike<number>, shape: number[], requiresGrad = false): Tensor {
  return Tensor.from(Float32Array.from(data), shape, { requiresGrad });
}

export interface GradInput {
  data: ArrayLike<number>;
  shape: number[];
  /** false for inputs that take no gradient (ids, positions) or are not checked. */
  grad?: boolean;
  /** A prebuilt tensor (e.g. i32 ids); data/shape are then ignored. */
  tensor?: Tensor;
}

/**
 * Checks the analytic gradients of f at the given inputs against central finite differences
 * of L = sum(f(inputs) * R) for a fixed random R. Inputs must be small (every element is probed).
 */
export function gradCheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: GradInput[],
  opts: { eps?: number; atol?: number; rtol?: number; seed?: number; maxProbes?: number } = {},
): void {
  const eps = opts.eps ?? 1e-2;
  const atol = opts.atol ?? 2e-3;
  const rtol = opts.rtol ?? 2e-2;
  const tensors = inputs.map((inp) => inp.tensor ?? f32(inp.data, inp.shape, inp.grad !== false));
  const out = f(...tensors);
  const r = randomArray(out.size, opts.seed ?? 99);
  const rT = f32(r, [...out.shape]);
  out.backward(rT);
  const analytic = tensors.map((t) => (t.grad ? Array.from(t.grad.toArray() as Float32Array) : null));
  out.dispose();

  const lossAt = (values: Float64Array[]): number =>
    noGrad(() => {
      const xs = inputs.map((inp, i) => inp.tensor ?? f32(values[i]!, inp.shape));
      const y = f(...xs);
      const ys = y.toArray() as Float32Array;
      let acc = 0;
      for (let j = 0; j < ys.length; j++) acc += ys[j]! * r[j]!;
      y.dispose();
      xs.forEach((x, i) => inputs[i]!.tensor || x.dispose());
      return acc;
    });

  const base = inputs.map((inp) => Float64Array.from(inp.tensor ? [] : inp.data));
  inputs.forEach((inp, i) => {
    if (inp.tensor || inp.grad === false) return;
    const grad = analytic[i];
    expect(grad, `input ${i} received no gradient`).not.toBeNull();
    const n = base[i]!.length;
    const step = Math.max(1, Math.floor(n / (opts.maxProbes ?? 400)));
    const numeric: number[] = [];
    const got: number[] = [];
    for (let j = 0; j < n; j += step) {
      const orig = base[i]![j]!;
      base[i]![j] = orig + eps;
      const up = lossAt(base);
      base[i]![j] = orig - eps;
      const down = lossAt(base);
      base[i]![j] = orig;
      numeric.push((up - down) / (2 * eps));
      got.push(grad![j]!);
    }
    expectClose(got, numeric, atol, rtol, `gradient of input ${i}`);
  });
  tensors.forEach((t) => t.dispose());
  rT.dispose();
  clearTape();
}
