// Fused causal attention (FlashAttention-2 on CPU): softmax(q k^T * scale) v per head over packed
// variable-length sequences, with grouped-query heads. Forward keeps only the log-sum-exp
// (H, T) for backward, which recomputes the probabilities tile by tile: memory is linear in T.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { record } from '../autograd.js';
import { expectKernel, expectDType, expectRank, expectShape } from '../check.js';
import type { Device } from '../dtype.js';
import { Tensor } from '../tensor.js';

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
