// Shared test helpers: closeness checks, random inputs, and the finite-difference gradient check
// that every differentiable op goes through (as tinygrad's helper_test_op does).
import { describe, expect, it } from 'vitest';
import type { LlamaForCausalLM } from '../src/models/llama.js';
import { Module, SwiGLUMLP, type FeedForward, type ParamInit } from '../src/nn/index.js';
import { deviceUnavailableReason, kernelDevices } from '../src/native/devices.js';
import { Rng, Tensor, noGrad, clearTape, setMatmulPrecision, type Device, type MatmulPrecision, type TensorOptions } from '../src/tensor/index.js';
import type { StageConfig, StageKind } from '../src/train/config.js';

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

/**
 * The values of toArray() / toRaw() as plain numbers, for toEqual against number literals.
 * toArray() is typed as any dtype's array; i64 (BigInt64Array) fails here, as its bigints
 * never equalled numbers through Array.from either.
 */
export function numbers(values: ArrayLike<number> | BigInt64Array): number[] {
  if (values instanceof BigInt64Array) expect.fail('numbers(): got i64 values (BigInt64Array); compare them as bigints');
  return Array.from(values);
}

/** A stage config narrowed to the kind the test runs (validateStageConfig returns the union of kinds). */
export function stageOfKind<K extends StageKind>(cfg: StageConfig, kind: K): Extract<StageConfig, { kind: K }> {
  if (cfg.kind !== kind) expect.fail(`expected a ${kind} stage config, got kind "${cfg.kind}"`);
  return cfg as Extract<StageConfig, { kind: K }>;
}

export function f32(data: ArrayLike<number>, shape: number[], requiresGrad = false, device: Device = 'cpu'): Tensor {
  return Tensor.from(Float32Array.from(data), shape, { requiresGrad, device });
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
  opts: { eps?: number; atol?: number; rtol?: number; seed?: number; maxProbes?: number; device?: Device } = {},
): void {
  const device = opts.device ?? 'cpu';
  const eps = opts.eps ?? 1e-2;
  const atol = opts.atol ?? 2e-3;
  const rtol = opts.rtol ?? 2e-2;
  const tensors = inputs.map((inp) => inp.tensor ?? f32(inp.data, inp.shape, inp.grad !== false, device));
  const out = f(...tensors);
  const r = randomArray(out.size, opts.seed ?? 99);
  const rT = f32(r, [...out.shape], false, device);
  out.backward(rT);
  const analytic = tensors.map((t) => (t.grad ? Array.from(t.grad.toArray() as Float32Array) : null));
  out.dispose();

  const lossAt = (values: Float64Array[]): number =>
    noGrad(() => {
      const xs = inputs.map((inp, i) => inp.tensor ?? f32(values[i]!, inp.shape, false, device));
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

/** Every device an op test runs on; tests on one a machine lacks are reported skipped. */
export const DEVICES: readonly Device[] = ['cpu', 'cuda'];

/**
 * One op suite per device (as tfjs runs one op suite against every backend): `body(device)` is
 * the suite, `kernels` the native functions it exercises. A device this machine lacks, or one
 * those functions have no kernel for (their binding's kernel table), is reported as a skipped
 * suite saying why, e.g. "rmsnorm [cuda] skipped: no cuda kernel for rmsnormForward".
 * `devices` narrows the suite (['cuda'] for what only the GPU path has).
 */
export function describeDevices(name: string, kernels: readonly string[], body: (device: Device) => void, devices: readonly Device[] = DEVICES): void {
  for (const device of devices) {
    const missing = kernels.filter((k) => !kernelDevices(k).includes(device));
    const why = deviceUnavailableReason(device) ?? (missing.length ? `no ${device} kernel for ${missing.join(', ')}` : null);
    // The body is not even collected where it cannot run (it may build tensors on the device).
    // Reason for the skip, in its name: no such device here (no GPU on the 2-core CI machine),
    // or no kernel for it yet (CUDA kernels are the "CUDA backend" issue); scripts/gpu-check.sh
    // runs these on a GPU machine.
    if (why) describe(`${name} [${device}]`, () => it.skip(`skipped: ${why}`, () => {}));
    else describe(`${name} [${device}]`, () => body(device));
  }
}

/** Tensor factories and gradCheck on one device, for the body of describeDevices. */
export function on(device: Device) {
  const withDevice = <O extends TensorOptions>(opts?: O): O => ({ ...opts, device }) as O;
  return {
    device,
    zeros: (shape: number[], opts?: TensorOptions) => Tensor.zeros(shape, withDevice(opts)),
    full: (shape: number[], value: number, opts?: TensorOptions) => Tensor.full(shape, value, withDevice(opts)),
    from: (data: Parameters<typeof Tensor.from>[0], shape?: number[], opts?: TensorOptions) => Tensor.from(data, shape, withDevice(opts)),
    randn: (shape: number[], opts?: Parameters<typeof Tensor.randn>[1]) => Tensor.randn(shape, withDevice(opts)),
    f32: (data: ArrayLike<number>, shape: number[], requiresGrad = false) => f32(data, shape, requiresGrad, device),
    i32: (data: ArrayLike<number>, shape?: number[]) => Tensor.from(Int32Array.from(data), shape, { device }),
    gradCheck: (fn: Parameters<typeof gradCheck>[0], inputs: GradInput[], opts: Parameters<typeof gradCheck>[2] = {}) =>
      gradCheck(fn, inputs, { ...opts, device }),
  };
}

/** Greedy continuation by full forwards without any cache: the slow reference for engine tests. */
export function greedyByFullForwards(model: LlamaForCausalLM, prompt: readonly number[], n: number): number[] {
  const V = model.config.vocabSize;
  const toks = [...prompt];
  noGrad(() => {
    for (let s = 0; s < n; s++) {
      const out = model.forward({ tokens: Int32Array.from(toks) });
      const row = (out.toArray() as Float32Array).subarray((toks.length - 1) * V);
      let b = 0;
      for (let i = 1; i < row.length; i++) if (row[i]! > row[b]!) b = i;
      out.dispose();
      toks.push(b);
    }
  });
  return toks.slice(prompt.length);
}

/**
 * A feed-forward that is not the plain SwiGLUMLP (so the fused decode cannot take it) but computes
 * the same thing, counting its forwards: the stand-in for another kind of layer (MoE) in tests.
 */
export class CountingSwiGLU extends Module implements FeedForward {
  static calls = 0;
  readonly inner: SwiGLUMLP;
  constructor(dim: number, hidden: number, init: ParamInit) {
    super();
    this.inner = this.registerModule('inner', new SwiGLUMLP(dim, hidden, init));
  }
  forward(x: Tensor): Tensor {
    CountingSwiGLU.calls++;
    return this.inner.forward(x);
  }
}

/** Runs fn at matmul precision p and restores the previous precision, also on a throw. */
export function withPrecision<T>(p: MatmulPrecision, fn: () => T): T {
  const previous = setMatmulPrecision(p);
  try {
    return fn();
  } finally {
    setMatmulPrecision(previous);
  }
}
