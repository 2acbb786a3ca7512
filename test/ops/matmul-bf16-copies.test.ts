// bf16 activation storage (issue 19): at matmul precision 'bf16' on a CPU with a bf16 kernel,
// matmul and linear round their f32 inputs once into bf16 copies, the kernel reads those and
// backward keeps them instead of the f32 tensors (linear keeps its f32 weight, a parameter alive
// anyway). The kernel rounded the same way while packing, so every result is the same bit for
// bit as the old path (setCpuBf16Copies(false)), while the bytes the tape keeps for linears'
// inputs halve.
import { afterEach, describe, expect, it } from 'vitest';
import { LlamaForCausalLM, preset, validateConfig } from '../../src/models/index.js';
import {
  Tensor, adamwStep, bf16MatmulKernel, clamp, clearTape, clipGradNorm, memoryStats, scope, tapeLength,
} from '../../src/tensor/index.js';
import { linear, matmul, setCpuBf16Copies, setMatmulPrecision } from '../../src/tensor/ops/matmul.js';
import { randomArray } from '../helpers.js';
import { matmulCases } from '../reference/matmul.js';

afterEach(() => {
  setMatmulPrecision('f32');
  setCpuBf16Copies(true);
  clearTape();
});

const f32 = (a: ArrayLike<number>): Float32Array => Float32Array.from(a);
const prod = (dims: number[]): number => dims.reduce((p, d) => p * d, 1);
const bits = (t: Tensor): Buffer => Buffer.from((t.toArray() as Float32Array).buffer);

/** fn at precision 'bf16' with the copies on or off (the old path: the kernel rounds f32 inputs while packing). */
function atBf16<T>(copies: boolean, fn: () => T): T {
  const previousCopies = setCpuBf16Copies(copies);
  const previous = setMatmulPrecision('bf16');
  try {
    return fn();
  } finally {
    setMatmulPrecision(previous);
    setCpuBf16Copies(previousCopies);
  }
}

const T = 64, N = 256;
const batch = {
  tokens: Int32Array.from({ length: N }, (_, i) => (i * 7 + 3) % 250),
  targets: Int32Array.from({ length: N }, (_, i) => (i * 11 + 5) % 250),
  positions: Int32Array.from({ length: N }, (_, i) => i % T),
  cuSeqlens: Int32Array.from({ length: N / T + 1 }, (_, b) => b * T),
};
const tinyModel = (): LlamaForCausalLM =>
  new LlamaForCausalLM(validateConfig({ ...preset('tiny').config, vocabSize: 259, maxSeqLen: T }), { seed: 7 });

const noBf16Kernel = bf16MatmulKernel() === 'f32';
const suite = `bf16 copies of matmul inputs${noBf16Kernel ? ' (skipped: this CPU has no bf16 kernel, so precision bf16 does not round)' : ''}`;
describe.skipIf(noBf16Kernel)(suite, () => {
  it('matmul and linear: outputs and both gradients equal the kernel-rounding path bit for bit', () => {
    let seed = 1;
    for (const { s, transA, transB, aShape, bShape, what } of matmulCases()) {
      const av = f32(randomArray(prod(aShape), seed++)), bv = f32(randomArray(prod(bShape), seed++));
      const gv = f32(randomArray(prod([...s.batch, s.M, s.N]), seed++));
      const run = (copies: boolean): Buffer[] => {
        const a = Tensor.from(av, aShape, { requiresGrad: true }), b = Tensor.from(bv, bShape, { requiresGrad: true });
        const out = atBf16(copies, () => matmul(a, b, { transA, transB }));
        out.backward(Tensor.from(gv, out.shape));
        return [bits(out), bits(a.grad!), bits(b.grad!)];
      };
      const [on, off] = [run(true), run(false)];
      ['out', 'da', 'db'].forEach((name, i) => expect(on[i]!.equals(off[i]!), `${what} ${name}`).toBe(true));
    }
    for (const rows of [3, 90]) { // a few rows (no GEMV at bf16) and many
      const xv = f32(randomArray(rows * 48, 11)), wv = f32(randomArray(80 * 48, 12)), gv = f32(randomArray(rows * 80, 13));
      const run = (copies: boolean): Buffer[] => {
        const x = Tensor.from(xv, [rows, 48], { requiresGrad: true }), w = Tensor.from(wv, [80, 48], { requiresGrad: true });
        const y = atBf16(copies, () => linear(x, w));
        y.backward(Tensor.from(gv, y.shape));
        return [bits(y), bits(x.grad!), bits(w.grad!)];
      };
      const [on, off] = [run(true), run(false)];
      ['y', 'dx', 'dW'].forEach((name, i) => expect(on[i]!.equals(off[i]!), `linear rows ${rows} ${name}`).toBe(true));
    }
  });

  it('training steps of a tiny llama: the same losses and gradients bit for bit, and different from f32', () => {
    const train = (precision: 'f32' | 'bf16', copies: boolean): { losses: number[]; grads: Buffer[][] } => {
      const m = tinyModel();
      const params = m.parameters();
      const state = params.map((p) => ({ m: Tensor.zeros(p.shape), v: Tensor.zeros(p.shape) }));
      const losses: number[] = [];
      const grads: Buffer[][] = [];
      const previousCopies = setCpuBf16Copies(copies);
      const previous = setMatmulPrecision(precision);
      try {
        for (let step = 1; step <= 3; step++) {
          const l = scope(() => m.loss(batch));
          losses.push(l.item());
          l.backward();
          l.dispose();
          grads.push(params.map((p) => bits(p.grad!)));
          clipGradNorm(params.map((p) => p.grad!), 1.0);
          params.forEach((p, i) => adamwStep(p, p.grad!, state[i]!.m, state[i]!.v, { lr: 1e-2, weightDecay: 0, step }));
          m.zeroGrad();
        }
      } finally {
        setMatmulPrecision(previous);
        setCpuBf16Copies(previousCopies);
      }
      for (const s of state) (s.m.dispose(), s.v.dispose());
      m.dispose();
      expect(tapeLength()).toBe(0);
      return { losses, grads };
    };
    const on = train('bf16', true), off = train('bf16', false), exact = train('f32', true);
    expect(on.losses).toEqual(off.losses);
    on.grads.forEach((step, s) => step.forEach((g, i) => expect(g.equals(off.grads[s]![i]!), `step ${s + 1} parameter ${i}`).toBe(true)));
    expect(on.losses.some((l, i) => l !== exact.losses[i])).toBe(true); // the precision reached the matmuls
  }, 120_000);

  it('linears of one input share one copy, and a chain of linears keeps half the bytes for its inputs', () => {
    // Three projections of one x (q, k, v): the tape keeps one bf16 copy of x, not three.
    const rows = 512, d = 64;
    const x = Tensor.from(f32(randomArray(rows * d, 21)), [rows, d], { requiresGrad: true });
    const ws = [22, 23, 24].map((seed) => Tensor.from(f32(randomArray(d * d, seed)), [d, d], { requiresGrad: true }));
    const kept = (copies: boolean, fn: () => Tensor[]): number => {
      const before = memoryStats().cpu.liveBytes;
      const outs = atBf16(copies, fn);
      const after = memoryStats().cpu.liveBytes - outs.reduce((b, t) => b + t.size * 4, 0);
      outs.forEach((t) => t.dispose());
      clearTape();
      return after - before;
    };
    expect(kept(true, () => ws.map((w) => linear(x, w)))).toBe(rows * d * 2); // one bf16 copy of x
    expect(kept(false, () => ws.map((w) => linear(x, w)))).toBe(0); // x itself (held by the test anyway)

    // x -> linear -> clamp -> linear -> clamp -> linear: clamp keeps its input (the linear's
    // output); each later linear's input is kept only by that linear.
    const c = (t: Tensor): Tensor => clamp(t, -1, 1);
    const chain = (): Tensor[] => [scope(() => linear(c(linear(c(linear(x, ws[0]!)), ws[1]!)), ws[2]!))];
    const on = kept(true, chain), off = kept(false, chain);
    const act = rows * d * 4; // bytes of one f32 activation
    expect(off).toBe(2 * act + 2 * act); // two clamp inputs + the two clamp outputs the linears keep
    expect(on).toBe(2 * act + 2 * (act / 2) + act / 2); // ... as bf16, and the bf16 copy of x
  });

  it('a training forward of a tiny llama keeps half the bytes for its linears\' inputs', () => {
    const m = tinyModel();
    const kept = (copies: boolean): number => {
      const before = memoryStats().cpu.liveBytes;
      const loss = atBf16(copies, () => scope(() => m.loss(batch)));
      const after = memoryStats().cpu.liveBytes;
      loss.dispose();
      clearTape();
      return after - before;
    };
    const off = kept(false), on = kept(true);
    console.log(`tiny llama training forward at bf16, bytes the tape keeps: ${off} with f32 inputs, ${on} with bf16 copies (${(on / off).toFixed(3)})`);
    // Per layer the linears keep x after the first norm (q, k, v: one copy), the attention output
    // (o), x after the second norm (gate, up: one copy) and the SwiGLU output (down). All but the
    // attention output (which attention itself keeps in f32) were kept only by the linears: half
    // their bytes go; the attention output gains a bf16 copy.
    const { dim, ffnDim, nLayers } = m.config;
    expect(off - on).toBe(nLayers * (N * 4 / 2) * (dim + ffnDim + dim - dim));
    m.dispose();
  });
});
