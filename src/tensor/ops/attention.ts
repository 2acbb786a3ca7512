// Fused causal attention (FlashAttention-2 on CPU): softmax(q k^T * scale) v per head over packed
// variable-length sequences, with grouped-query heads. Forward keeps only the log-sum-exp
// (H, T) for backward, which recomputes the probabilities tile by tile: memory is linear in T.
// On 'cuda' at matmul precision bf16 or fp16 it computes in that 16-bit format (attentionDType).
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectRank, expectShape } from '../check.js';
import type { Device } from '../dtype.js';
import { Tensor } from '../tensor.js';
import { matmulPrecision } from './matmul.js';

/** The element types attention computes in: f32, or a 16-bit format (softmax and sums in f32). */
export type AttentionDType = 'f32' | 'bf16' | 'f16';
const ATTENTION_DTYPES: readonly AttentionDType[] = ['f32', 'bf16', 'f16'];

export interface AttentionOptions {
  /**
   * Cumulative sequence lengths (nseq + 1), int32: sequence s is tokens
   * [cuSeqlens[s], cuSeqlens[s + 1]); starts at 0, ends at T. Default: one sequence of length T.
   */
  cuSeqlens?: Tensor | readonly number[];
  /** Each token attends only to itself and earlier tokens of its sequence. Default true. */
  causal?: boolean;
  /** Logit scale. Default 1 / sqrt(D). */
  scale?: number;
  /**
   * What q, k, v, the output and the gradients are rounded to while the kernel runs ('bf16' or
   * 'f16'; lse, softmax and sums stay f32), or 'f32'. The tensors in and out are f32 either way.
   * Default attentionDType(q.device). On the CPU a 16-bit dtype runs a reference twin of the CUDA
   * kernel (widened to f32, rounded once): for tests, not speed.
   */
  dtype?: AttentionDType;
}

/**
 * The dtype attention computes in by default on `device` at the current matmul precision: the
 * 16-bit kernels on 'cuda' at precision 'bf16' or 'fp16' (they halve the bytes the tiles move and
 * use the tensor cores), f32 otherwise. On the CPU attention stays f32 at every precision: its
 * kernel is f32 tiles with no 16-bit form, so rounding q, k and v there would cost accuracy and
 * gain nothing (its memory is already linear in T; the matmuls around it carry the precision).
 */
export function attentionDType(device: Device): AttentionDType {
  if (device !== 'cuda') return 'f32';
  const p = matmulPrecision();
  return p === 'bf16' ? 'bf16' : p === 'fp16' ? 'f16' : 'f32';
}

const OP = 'attention';

function fail(code: 'E_SHAPE' | 'E_ARGUMENT', message: string): never {
  throw new PatentGPTError(code, `${OP}: ${message}`);
}

/** The cu_seqlens tensor (i32) and whether this call made it (and must dispose it). */
function seqlensTensor(cu: Tensor | readonly number[] | undefined, T: number, device: Device): { cu: Tensor; owned: boolean } {
  if (cu === undefined) return { cu: Tensor.from(new Int32Array([0, T]), undefined, { device }), owned: true };
  if (cu instanceof Tensor) {
    expectDType(OP, 'cuSeqlens', cu, 'i32');
    expectRank(OP, 'cuSeqlens', cu, 1);
    expectKernel(OP, 'attentionForward', cu);
    if (cu.size < 1) fail('E_SHAPE', 'cuSeqlens needs at least one entry (0)');
    return { cu, owned: false }; // its values are checked natively, before any kernel runs
  }
  if (cu.length < 1) fail('E_SHAPE', 'cuSeqlens needs at least one entry (0)');
  cu.forEach((c, i) => {
    if (!Number.isInteger(c)) fail('E_ARGUMENT', `cuSeqlens[${i}] = ${c} is not an integer`);
    if (i === 0 && c !== 0) fail('E_ARGUMENT', `cuSeqlens[0] must be 0, got ${c}`);
    if (i > 0 && c < cu[i - 1]!) fail('E_ARGUMENT', `cuSeqlens must not decrease: cuSeqlens[${i}] = ${c} < ${cu[i - 1]}`);
  });
  if (cu[cu.length - 1] !== T) fail('E_ARGUMENT', `cuSeqlens ends at ${cu[cu.length - 1]}, expected T = ${T}`);
  return { cu: Tensor.from(Int32Array.from(cu), undefined, { device }), owned: true }; // beside q, where the kernel reads it
}

/**
 * Scaled dot-product attention over packed sequences: q (T, H, D), k and v (T, Hkv, D) with
 * H a multiple of Hkv (query head h reads kv head h / (H / Hkv)); returns (T, H, D).
 * Differentiable in q, k and v.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  expectDType(OP, 'q', q, 'f32');
  expectDType(OP, 'k', k, 'f32');
  expectDType(OP, 'v', v, 'f32');
  expectRank(OP, 'q', q, 3);
  expectRank(OP, 'k', k, 3);
  expectKernel(OP, ['attentionForward', 'attentionBackward'], q, k, v);
  const [T, H, D] = q.shape as [number, number, number];
  const Hkv = k.shape[1]!;
  expectShape(OP, 'k', k, [T, -1, D]);
  expectShape(OP, 'v', v, k.shape);
  if (H < 1 || Hkv < 1 || D < 1) fail('E_SHAPE', `q ${q.describe()} and k ${k.describe()} need at least one head and D >= 1`);
  if (H % Hkv !== 0)
    fail('E_SHAPE', `q has ${H} heads, not a multiple of the ${Hkv} kv heads of k (grouped-query attention needs H % Hkv == 0)`);
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) fail('E_ARGUMENT', `scale must be finite, got ${scale}`);
  const causal = opts.causal ?? true;
  const dtype = opts.dtype ?? attentionDType(q.device);
  if (!ATTENTION_DTYPES.includes(dtype)) fail('E_ARGUMENT', `dtype must be ${ATTENTION_DTYPES.map((x) => `"${x}"`).join(', ')}, got ${JSON.stringify(dtype)}`);
  if (dtype !== 'f32') {
    expectKernel(OP, dtype === 'bf16' ? ['attentionForwardBf16', 'attentionBackwardBf16'] : ['attentionForwardF16', 'attentionBackwardF16'], q, k, v);
    return attention16(q, k, v, dtype, { T, H, Hkv, D, scale, causal }, opts.cuSeqlens);
  }
  const { cu, owned } = seqlensTensor(opts.cuSeqlens, T, q.device);
  const nseq = cu.size - 1;

  const out = Tensor.empty([T, H, D], { device: q.device });
  const lse = Tensor.empty([H, T], { device: q.device });
  try {
    addon().attentionForward(out.storage, out.offset, lse.storage, lse.offset, q.storage, q.offset, k.storage, k.offset,
      v.storage, v.offset, cu.storage, cu.offset, nseq, T, H, Hkv, D, scale, causal);
  } catch (err) {
    out.dispose();
    lse.dispose();
    if (owned) cu.dispose();
    throw err;
  }
  const result = record(OP, out, [q, k, v], [q, k, v, out, lse, cu], (g) => {
    const dq = Tensor.empty([T, H, D], { device: q.device });
    const dk = Tensor.empty([T, Hkv, D], { device: q.device });
    const dv = Tensor.empty([T, Hkv, D], { device: q.device });
    const delta = Tensor.empty([H, T], { device: q.device }); // scratch: rowsum(dO * O)
    addon().attentionBackward(dq.storage, dq.offset, dk.storage, dk.offset, dv.storage, dv.offset,
      delta.storage, delta.offset, g.storage, g.offset, out.storage, out.offset, lse.storage, lse.offset,
      q.storage, q.offset, k.storage, k.offset, v.storage, v.offset, cu.storage, cu.offset,
      nseq, T, H, Hkv, D, scale, causal);
    delta.dispose();
    return [dq, dk, dv];
  });
  lse.dispose(); // the tape holds its own reference when backward will need it
  if (owned) cu.dispose();
  return result;
}

interface Dims {
  T: number;
  H: number;
  Hkv: number;
  D: number;
  scale: number;
  causal: boolean;
}

/**
 * attention() in a 16-bit format: q, k, v rounded to `dtype` on their device, the 16-bit kernels
 * forward and backward (lse and delta f32), the output and the gradients widened back to f32 for
 * the rest of the graph. The tape keeps the 16-bit copies backward reads (half the bytes of f32).
 */
function attention16(q: Tensor, k: Tensor, v: Tensor, dtype: 'bf16' | 'f16', d: Dims, cuSeqlens: AttentionOptions['cuSeqlens']): Tensor {
  const { T, H, Hkv, D, scale, causal } = d;
  const a = addon();
  const [forward, backward] = dtype === 'bf16' ? [a.attentionForwardBf16, a.attentionBackwardBf16] : [a.attentionForwardF16, a.attentionBackwardF16];
  const device = q.device;
  const { cu, owned } = seqlensTensor(cuSeqlens, T, device);
  const nseq = cu.size - 1;
  const made: Tensor[] = [];
  const make = (t: Tensor): Tensor => (made.push(t), t);
  let out: Tensor;
  try {
    const [q16, k16, v16] = [q, k, v].map((t) => make(t.to(dtype))) as [Tensor, Tensor, Tensor];
    const out16 = make(Tensor.empty([T, H, D], { dtype, device }));
    const lse = make(Tensor.empty([H, T], { device }));
    forward(out16.storage, out16.offset, lse.storage, lse.offset, q16.storage, q16.offset, k16.storage, k16.offset,
      v16.storage, v16.offset, cu.storage, cu.offset, nseq, T, H, Hkv, D, scale, causal);
    out = out16.to('f32');
    out = record(OP, out, [q, k, v], [q16, k16, v16, out16, lse, cu], (g) => {
      const grads: Tensor[] = [];
      const g16 = g.to(dtype);
      const delta = Tensor.empty([H, T], { device }); // scratch: rowsum(dO * O)
      try {
        const dq = Tensor.empty([T, H, D], { dtype, device });
        grads.push(dq);
        const dk = Tensor.empty([T, Hkv, D], { dtype, device });
        grads.push(dk);
        const dv = Tensor.empty([T, Hkv, D], { dtype, device });
        grads.push(dv);
        backward(dq.storage, dq.offset, dk.storage, dk.offset, dv.storage, dv.offset, delta.storage, delta.offset,
          g16.storage, g16.offset, out16.storage, out16.offset, lse.storage, lse.offset, q16.storage, q16.offset,
          k16.storage, k16.offset, v16.storage, v16.offset, cu.storage, cu.offset, nseq, T, H, Hkv, D, scale, causal);
        return [dq.to('f32'), dk.to('f32'), dv.to('f32')];
      } finally {
        for (const t of grads) t.dispose();
        g16.dispose();
        delta.dispose();
      }
    });
  } finally {
    for (const t of made) t.dispose(); // the tape holds its own references to what backward reads
    if (owned) cu.dispose();
  }
  return out;
}
