// attention() computing in bf16 or fp16 (the CUDA kernels attention_forward_16/backward_16, and
// the bindings' CPU reference twin of them): q, k, v rounded to the format, softmax and sums in
// f32, the output and gradients rounded once and handed back as f32. Checked on every device
// present against the f32 kernel on the same rounded inputs, with tolerances scaled to the format
// (its unit roundoff); on 'cuda' the matmul precision picks the 16-bit kernels by default, while
// the CPU stays f32 at every precision. Argument checks give PatentGPTErrors. The cuda suite is
// skipped with its reason where there is no GPU (scripts/gpu-check.sh runs it on one).
import { afterEach, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import {
  Tensor, attention, attentionDType, matmulPrecision, setMatmulPrecision, type Device, type MatmulPrecision,
} from '../../src/tensor/index.js';
import { describeDevices, on, randomArray } from '../helpers.js';

type Half = 'bf16' | 'f16';
// Unit roundoff of each format, 2^-(significant bits - 1) as the native test states it: rounding to
// nearest is within half of it, the rest is headroom for the device's summation order.
const U: Record<Half, number> = { bf16: 2 ** -8, f16: 2 ** -11 };

const arr = (t: Tensor): Float32Array => t.toArray() as Float32Array;
/** x's values rounded to the format and widened back (what the kernel reads). */
const rounded = (x: Tensor, dt: Half): Tensor => {
  const h = x.to(dt);
  const r = h.to('f32');
  h.dispose();
  return r;
};

interface Case { T: number; H: number; Hkv: number; D: number; cu: number[]; causal: boolean }
const CASES: Case[] = [
  { T: 37, H: 4, Hkv: 2, D: 16, cu: [0, 20, 20, 37], causal: true },
  { T: 24, H: 2, Hkv: 2, D: 64, cu: [0, 24], causal: false },
];

/**
 * Forward and backward of attention at `dt` on `device` (by opts.dtype, or by the matmul precision
 * when byPrecision) against the f32 kernel on the CPU over the rounded inputs (and, for backward,
 * the rounded output gradient). Tolerance: the output is rounded once (u |want|) plus f32
 * summation order; the gradients also see the rounded output in delta = rowsum(dO * O) (u of the
 * largest value), so they get 4u relative to each tensor's largest magnitude.
 */
function check(c: Case, dt: Half, device: Device, seed: number, byPrecision = false): void {
  const t = on(device);
  const qd = randomArray(c.T * c.H * c.D, seed), kd = randomArray(c.T * c.Hkv * c.D, seed + 1), vd = randomArray(c.T * c.Hkv * c.D, seed + 2);
  const gd = randomArray(c.T * c.H * c.D, seed + 3);
  const q = t.f32(qd, [c.T, c.H, c.D], true), k = t.f32(kd, [c.T, c.Hkv, c.D], true), v = t.f32(vd, [c.T, c.Hkv, c.D], true);
  const opts = { cuSeqlens: c.cu, causal: c.causal, ...(byPrecision ? {} : { dtype: dt }) };
  const out = attention(q, k, v, opts);
  expect(out.dtype).toBe('f32');
  const g = t.f32(gd, [c.T, c.H, c.D]);
  out.backward(g);

  // the reference: f32 attention on the CPU over the rounded values
  const cpu = (x: Tensor): Tensor => x.to('cpu');
  const [qr, kr, vr] = [q, k, v].map((x) => rounded(cpu(x.detach()), dt)) as [Tensor, Tensor, Tensor];
  for (const x of [qr, kr, vr]) x.requiresGrad = true;
  const want = attention(qr, kr, vr, { cuSeqlens: c.cu, causal: c.causal, dtype: 'f32' });
  want.backward(rounded(cpu(g), dt));

  const got = arr(cpu(out));
  const ref = arr(want);
  // Each output is a 16-bit value, rounded once from what the f32 kernel computes.
  expect(Array.from(got)).toEqual(Array.from(arr(rounded(cpu(out), dt))));
  let worst = 0;
  for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i]! - ref[i]!) - (U[dt] + 1e-5) * Math.abs(ref[i]!));
  expect(worst, `${dt} out`).toBeLessThanOrEqual(1e-6);
  for (const [name, a, b] of [['dq', q, qr], ['dk', k, kr], ['dv', v, vr]] as const) {
    const x = arr(cpu(a.grad!)), y = arr(b.grad!);
    expect(Array.from(x), `${name} is ${dt} values`).toEqual(Array.from(arr(rounded(cpu(a.grad!), dt))));
    const big = y.reduce((m, z) => Math.max(m, Math.abs(z)), 0);
    let bad = 0;
    for (let i = 0; i < y.length; i++) bad = Math.max(bad, Math.abs(x[i]! - y[i]!) - 4 * U[dt] * big);
    expect(bad, `${dt} ${name}`).toBeLessThanOrEqual(1e-6);
  }
}

describeDevices('attention in bf16 and fp16 against f32 on rounded inputs', ['attentionForwardBf16', 'attentionForwardF16'], (device) => {
  for (const dt of ['bf16', 'f16'] as const)
    CASES.forEach((c, i) => {
      it(`${dt}: T ${c.T}, H ${c.H}/${c.Hkv}, D ${c.D}, ${c.causal ? 'causal' : 'full'}`, () => check(c, dt, device, 11 + i));
    });
});

let saved: MatmulPrecision | null = null;
const atPrecision = (p: string): void => {
  const prev = setMatmulPrecision(p as MatmulPrecision);
  saved ??= prev;
};
afterEach(() => {
  if (saved !== null) setMatmulPrecision(saved);
  saved = null;
});

// CUDA only: on the CPU attention stays f32 at every precision (the next suite checks that).
describeDevices('attention on cuda follows the matmul precision', ['attentionForwardBf16', 'attentionForwardF16'], (device) => {
  it('precision bf16 runs the bf16 kernels, fp16 the f16 ones', () => {
    atPrecision('bf16');
    check(CASES[0]!, 'bf16', device, 5, true);
    atPrecision('fp16');
    check(CASES[0]!, 'f16', device, 6, true);
  });
}, ['cuda']);

describe('which dtype attention computes in', () => {
  it('on cuda: bf16 at precision bf16, f16 at fp16, f32 at f32; on the CPU f32 at every precision', () => {
    const seen: Record<string, [string, string]> = {};
    for (const p of ['f32', 'bf16', 'fp16']) {
      atPrecision(p);
      expect(matmulPrecision()).toBe(p);
      seen[p] = [attentionDType('cuda'), attentionDType('cpu')];
    }
    expect(seen).toEqual({ f32: ['f32', 'f32'], bf16: ['bf16', 'f32'], fp16: ['f16', 'f32'] });
  });

  it('on the CPU the default path stays f32 at precision bf16 and fp16: bit-identical to f32', () => {
    const c = CASES[0]!;
    const q = Tensor.from(Float32Array.from(randomArray(c.T * c.H * c.D, 3)), [c.T, c.H, c.D]);
    const k = Tensor.from(Float32Array.from(randomArray(c.T * c.Hkv * c.D, 4)), [c.T, c.Hkv, c.D]);
    const v = Tensor.from(Float32Array.from(randomArray(c.T * c.Hkv * c.D, 5)), [c.T, c.Hkv, c.D]);
    const f32 = arr(attention(q, k, v, { cuSeqlens: c.cu }));
    for (const p of ['bf16', 'fp16']) {
      atPrecision(p);
      expect(Array.from(arr(attention(q, k, v, { cuSeqlens: c.cu })))).toEqual(Array.from(f32));
    }
    // while asking for bf16 explicitly does round (the reference twin)
    expect(Array.from(arr(attention(q, k, v, { cuSeqlens: c.cu, dtype: 'bf16' })))).not.toEqual(Array.from(f32));
  });
});

describe('16-bit attention: argument checks are errors, not crashes', () => {
  const T = 6, H = 2, D = 8;
  const x = (shape: number[]): Tensor => Tensor.from(Float32Array.from(randomArray(shape.reduce((a, b) => a * b, 1), 9)), shape);
  // The op's own checks throw PatentGPTError; the native ones (cuSeqlens values) an Error with a code.
  const code = (fn: () => unknown, native = false): string => {
    try {
      fn();
    } catch (err) {
      if (!native) expect(err).toBeInstanceOf(PatentGPTError);
      expect((err as Error).message).toMatch(/^attention/);
      return (err as PatentGPTError).code;
    }
    return 'no error';
  };
  it('an unknown dtype', () => {
    expect(code(() => attention(x([T, H, D]), x([T, H, D]), x([T, H, D]), { dtype: 'f64' as 'f32' }))).toBe('E_ARGUMENT');
  });
  it('16-bit tensors in (the op takes f32 and rounds them itself)', () => {
    const q = x([T, H, D]).to('bf16');
    expect(code(() => attention(q, x([T, H, D]), x([T, H, D]), { dtype: 'bf16' }))).toBe('E_DTYPE');
  });
  it('shapes that do not fit, and cuSeqlens that do not end at T', () => {
    expect(code(() => attention(x([T, H, D]), x([T, 3, D]), x([T, 3, D]), { dtype: 'f16' }))).toBe('E_SHAPE');
    expect(code(() => attention(x([T, H, D]), x([T, H, 4]), x([T, H, 4]), { dtype: 'bf16' }))).toBe('E_SHAPE');
    expect(code(() => attention(x([T, H, D]), x([T, H, D]), x([T, H, D]), { dtype: 'f16', cuSeqlens: [0, 4] }))).toBe('E_ARGUMENT');
    const cu = Tensor.from(new Int32Array([0, 3, 5]));
    expect(code(() => attention(x([T, H, D]), x([T, H, D]), x([T, H, D]), { dtype: 'bf16', cuSeqlens: cu }), true)).toBe('E_NATIVE_ARG');
  });
});
