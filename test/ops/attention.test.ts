import { afterAll, describe, expect, it } from 'vitest';
import { PatentGPTError } from '../../src/errors.js';
import { Tensor, type Device, attention, clearTape, memoryStats, noGrad, setNumThreads } from '../../src/tensor/index.js';
import { attentionRef } from '../reference/attention.js';
import { expectClose, f32, gradCheck, randomArray, describeDevices, on } from '../helpers.js';

interface Case {
  T: number;
  H: number;
  Hkv: number;
  D: number;
  cu?: number[];
  causal: boolean;
  scale?: number;
}

function label(c: Case): string {
  return `T=${c.T} H=${c.H} Hkv=${c.Hkv} D=${c.D} cu=${c.cu ? `[${c.cu.join(',')}]` : 'one'} ${c.causal ? 'causal' : 'full'}`;
}

// Forward (out) and backward (dq, dk, dv for a random output gradient) against the reference.
function checkAgainstReference(c: Case, seed: number, device: Device = 'cpu'): void {
  const q = randomArray(c.T * c.H * c.D, seed);
  const k = randomArray(c.T * c.Hkv * c.D, seed + 1);
  const v = randomArray(c.T * c.Hkv * c.D, seed + 2);
  const dout = randomArray(c.T * c.H * c.D, seed + 3);
  const scale = c.scale ?? 1 / Math.sqrt(c.D);
  // The reference sees the f32-rounded inputs the kernel sees.
  const r = (a: Float64Array): Float32Array => Float32Array.from(a);
  const ref = attentionRef(
    { q: r(q), k: r(k), v: r(v), T: c.T, H: c.H, Hkv: c.Hkv, D: c.D, cuSeqlens: c.cu ?? [0, c.T], causal: c.causal, scale },
    r(dout),
  );
  const qt = f32(q, [c.T, c.H, c.D], true, device);
  const kt = f32(k, [c.T, c.Hkv, c.D], true, device);
  const vt = f32(v, [c.T, c.Hkv, c.D], true, device);
  const out = attention(qt, kt, vt, { cuSeqlens: c.cu, causal: c.causal, scale: c.scale });
  expect(out.shape).toEqual([c.T, c.H, c.D]);
  expectClose(out.toArray() as Float32Array, ref.out, 2e-5, 1e-4, `${label(c)}: out`);
  const g = f32(dout, [c.T, c.H, c.D], false, device);
  out.backward(g);
  expectClose(qt.grad!.toArray() as Float32Array, ref.dq!, 5e-5, 2e-4, `${label(c)}: dq`);
  expectClose(kt.grad!.toArray() as Float32Array, ref.dk!, 5e-5, 2e-4, `${label(c)}: dk`);
  expectClose(vt.grad!.toArray() as Float32Array, ref.dv!, 5e-5, 2e-4, `${label(c)}: dv`);
  [qt, kt, vt, out, g].forEach((t) => {
    t.grad?.dispose();
    t.dispose();
  });
}

describeDevices('attention against the float64 reference', ['attentionForward'], (device) => {
  const dev = on(device);
  const cases: Case[] = [
    // GQA ratios 1, 2, 4, 8
    { T: 70, H: 2, Hkv: 2, D: 16, causal: true },
    { T: 70, H: 4, Hkv: 2, D: 16, causal: true },
    { T: 70, H: 4, Hkv: 1, D: 16, causal: false },
    { T: 40, H: 8, Hkv: 1, D: 8, causal: true },
    // one head, T = 1, odd D, D = 64 / 128
    { T: 33, H: 1, Hkv: 1, D: 5, causal: true },
    { T: 1, H: 2, Hkv: 1, D: 24, causal: true },
    { T: 1, H: 1, Hkv: 1, D: 1, causal: false },
    { T: 67, H: 2, Hkv: 1, D: 24, causal: false },
    { T: 130, H: 2, Hkv: 1, D: 64, causal: true },
    { T: 65, H: 2, Hkv: 2, D: 128, causal: true },
    { T: 65, H: 1, Hkv: 1, D: 128, causal: false },
    // packed sequences of uneven length, including length 1 and an empty one
    { T: 150, H: 4, Hkv: 2, D: 24, cu: [0, 1, 66, 67, 140, 150], causal: true },
    { T: 150, H: 4, Hkv: 2, D: 24, cu: [0, 1, 66, 67, 140, 150], causal: false },
    { T: 12, H: 2, Hkv: 1, D: 7, cu: [0, 5, 5, 12], causal: true },
    // longer than one backward key block (256 keys)
    { T: 300, H: 2, Hkv: 1, D: 16, causal: true },
    { T: 330, H: 4, Hkv: 2, D: 8, cu: [0, 270, 330], causal: true },
    // a non-default scale
    { T: 20, H: 2, Hkv: 1, D: 8, causal: true, scale: 0.9 },
  ];
  cases.forEach((c, i) => it(label(c), () => checkAgainstReference(c, 10 * i + 1, device)));

  it('gives the same result on 1 and 2 threads', () => {
    setNumThreads(1);
    try {
      checkAgainstReference({ T: 130, H: 4, Hkv: 2, D: 32, causal: true }, 500, device);
      checkAgainstReference({ T: 130, H: 2, Hkv: 1, D: 32, cu: [0, 60, 130], causal: true }, 501, device);
    } finally {
      setNumThreads(2);
    }
    checkAgainstReference({ T: 130, H: 4, Hkv: 2, D: 32, causal: true }, 500, device);
  });

  it('saves lse and frees it with the tape; no grad keeps nothing', () => {
    const q = dev.randn([9, 2, 4], { seed: 1 });
    const k = dev.randn([9, 1, 4], { seed: 2 });
    const v = dev.randn([9, 1, 4], { seed: 3 });
    const before = memoryStats().cpu.liveCount;
    noGrad(() => attention(q, k, v)).dispose();
    expect(memoryStats().cpu.liveCount).toBe(before);
    q.requiresGrad = true;
    const out = attention(q, k, v);
    out.dispose();
    clearTape();
    expect(memoryStats().cpu.liveCount).toBe(before);
    [q, k, v].forEach((t) => t.dispose());
  });
});

describeDevices('attention gradients (finite differences)', ['attentionForward', 'attentionBackward'], (device) => {
  const dev = on(device);
  const shapes: Case[] = [
    { T: 5, H: 2, Hkv: 1, D: 3, causal: true },
    { T: 4, H: 2, Hkv: 2, D: 2, causal: false },
    { T: 6, H: 4, Hkv: 2, D: 3, cu: [0, 1, 4, 6], causal: true },
    { T: 1, H: 1, Hkv: 1, D: 5, causal: true },
  ];
  for (const c of shapes)
    it(label(c), () => {
      dev.gradCheck(
        (q, k, v) => attention(q!, k!, v!, { cuSeqlens: c.cu, causal: c.causal }),
        [
          { data: randomArray(c.T * c.H * c.D, 7), shape: [c.T, c.H, c.D] },
          { data: randomArray(c.T * c.Hkv * c.D, 8), shape: [c.T, c.Hkv, c.D] },
          { data: randomArray(c.T * c.Hkv * c.D, 9), shape: [c.T, c.Hkv, c.D] },
        ],
      );
    });
});

describeDevices('attention argument checks', ['attentionForward'], (device) => {
  const dev = on(device);
  const q = dev.randn([6, 4, 8], { seed: 1 });
  const k = dev.randn([6, 2, 8], { seed: 2 });
  const v = dev.randn([6, 2, 8], { seed: 3 });
  afterAll(() => [q, k, v].forEach((t) => t.dispose()));

  it('rejects H not a multiple of Hkv', () => {
    const k3 = dev.randn([6, 3, 8]);
    expect(() => attention(q, k3, k3)).toThrow(/attention: .*multiple/);
    k3.dispose();
  });

  it('rejects a head dim past the reserved tile scratch (256) at the binding, with a code', () => {
    const big = dev.randn([2, 1, 257]);
    expect(() => attention(big, big, big)).toThrow(/D \(head dim\) must be at most 256, got 257/);
    try {
      attention(big, big, big);
    } catch (err) {
      expect((err as { code?: string }).code).toBe('E_NATIVE_ARG');
    }
    big.dispose();
  });

  it('rejects shape and dtype mismatches', () => {
    const kd = dev.randn([6, 2, 7]);
    expect(() => attention(q, kd, kd)).toThrow(PatentGPTError);
    expect(() => attention(q, kd, kd)).toThrow(/attention: k/);
    const vt = dev.randn([5, 2, 8]);
    expect(() => attention(q, k, vt)).toThrow(/attention: v/);
    const k2 = dev.randn([6, 16]);
    expect(() => attention(q, k2, k2)).toThrow(/attention: k .*3 dimensions/);
    const ki = dev.zeros([6, 2, 8], { dtype: 'i32' });
    expect(() => attention(q, ki, v)).toThrow(/attention: k .*dtype f32/);
    [kd, vt, k2, ki].forEach((t) => t.dispose());
  });

  it('rejects bad cuSeqlens as arrays and as tensors', () => {
    expect(() => attention(q, k, v, { cuSeqlens: [0, 3, 5] })).toThrow(/attention: cuSeqlens ends at 5, expected T = 6/);
    expect(() => attention(q, k, v, { cuSeqlens: [1, 6] })).toThrow(/attention: cuSeqlens\[0\] must be 0/);
    expect(() => attention(q, k, v, { cuSeqlens: [0, 4, 2, 6] })).toThrow(/attention: cuSeqlens must not decrease/);
    expect(() => attention(q, k, v, { cuSeqlens: [0, 2.5, 6] })).toThrow(/attention: .*not an integer/);
    const bad = [
      [0, 4, 2, 6],
      [0, 3, 7],
      [2, 6],
      [0, -1, 6],
    ];
    for (const b of bad) {
      const t = dev.from(new Int32Array(b));
      expect(() => attention(q, k, v, { cuSeqlens: t }), `[${b.join(', ')}]`).toThrow(/attention: cuSeqlens/);
      t.dispose();
    }
    const f = dev.from([0, 6], [2]);
    expect(() => attention(q, k, v, { cuSeqlens: f })).toThrow(/attention: cuSeqlens .*dtype i32/);
    f.dispose();
  });

  it('rejects a non-finite scale', () => {
    expect(() => attention(q, k, v, { scale: Number.NaN })).toThrow(/attention: scale/);
    expect(() => attention(q, k, v, { scale: Infinity })).toThrow(/attention: scale/);
  });
});
