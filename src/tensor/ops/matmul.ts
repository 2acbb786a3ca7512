// Matrix products: matmul (batched, optional transposes, a 2-D right side broadcast over the
// batch) and linear (Hugging Face weight layout, no bias). Both run on native/cpu/gemm.cpp (or,
// at matmul precision 'bf16', native/cpu/gemm_bf16.cpp) and are differentiable in both inputs;
// their backward passes are GEMMs too, with the transposes folded into the kernel's flags rather
// than materialised. At a 16-bit precision ('fp16'; 'bf16' on CUDA, and on a CPU with a bf16
// kernel) f32 operands are rounded into 16-bit copies first: the GEMM reads those and backward
// keeps those of activations (half the bytes of f32 ones).
import { PatentGPTError } from '../../errors.js';
import { addon, type NativeStorage } from '../../native/loader.js';
import { isGradEnabled, record } from '../autograd.js';
import { expectKernel, expectDType, expectRank } from '../check.js';
import { Tensor } from '../tensor.js';

export interface MatmulOptions {
  /** a holds op(a)^T: its last two dimensions are (K, M). */
  transA?: boolean;
  /** b holds op(b)^T: its last two dimensions are (N, K). */
  transB?: boolean;
}

/**
 * How matmul and linear compute: 'f32'; 'bf16' (mixed precision: inputs rounded to bf16 while
 * the GEMM packs them, products summed in f32, f32 results and gradients; the kernel uses AMX or
 * AVX-512 BF16 where the CPU has them, else it is the f32 GEMM; on CUDA the inputs are cast to
 * bf16 on the device and cuBLASLt's bf16 GEMM runs on them); or 'fp16' (inputs, the upstream
 * gradient included, rounded to IEEE half, nearest even, beyond 65504 to infinity; products summed
 * in f32; f32 results and gradients; on CUDA cuBLASLt's f16 GEMM, on the CPU the f32 GEMM on the
 * rounded values: the reference of fp16 mixed precision, not a fast path). Tensors stay f32 either
 * way; bf16 inputs (not differentiable) are not rounded again.
 */
export type MatmulPrecision = 'f32' | 'bf16' | 'fp16';
export const MATMUL_PRECISIONS: readonly MatmulPrecision[] = ['f32', 'bf16', 'fp16'];

let precision: MatmulPrecision = 'f32';

/** The precision of the matmuls recorded from now on (a backward pass uses its forward's). */
export function matmulPrecision(): MatmulPrecision {
  return precision;
}

/** Sets the matmul precision process-wide (the trainer sets its stage's); returns the previous one. */
export function setMatmulPrecision(p: MatmulPrecision): MatmulPrecision {
  if (!MATMUL_PRECISIONS.includes(p))
    throw new PatentGPTError('E_ARGUMENT', `setMatmulPrecision: precision must be one of ${MATMUL_PRECISIONS.map((x) => `"${x}"`).join(', ')}, got ${JSON.stringify(p)}`);
  const previous = precision;
  precision = p;
  return previous;
}

/** The kernel that runs bf16-precision matmuls on this machine: 'amx', 'avx512bf16' or 'f32'. */
export function bf16MatmulKernel(): 'amx' | 'avx512bf16' | 'f32' {
  return addon().bf16GemmKernel();
}

// The CPU's bf16-compute kernels (gemm_bf16.cpp: f32 or bf16 operands, rounded while packed).
// CUDA has none: there f32 operands are rounded into copies first (roundsTo).
const computesInBf16 = (p: MatmulPrecision, t: Tensor): boolean => p === 'bf16' && t.device === 'cpu';

type Half = 'bf16' | 'f16';

let cpuBf16Copies = true;

/**
 * @internal Whether CPU matmuls at 'bf16' round their f32 operands into bf16 copies (the kernel
 * reads those, backward keeps them: half the bytes of the f32 activations) or let the kernel
 * round them while packing (the f32 tensors kept). Results are the same bit for bit; tests and
 * the train bench compare the two. Returns the previous setting.
 */
export function setCpuBf16Copies(on: boolean): boolean {
  const previous = cpuBf16Copies;
  cpuBf16Copies = on;
  return previous;
}

// The 16-bit dtype f32 operands on `device` are rounded to (a copy, native cast, nearest even)
// before the GEMM at precision p, or null when the GEMM reads them as they are. On CUDA both
// 16-bit precisions run cuBLASLt's 16-bit GEMM on the copies; on the CPU, fp16 is the f32 GEMM on
// them and bf16 the bf16 kernel (gemmBf16ComputeBf16, which would round them the same way while
// packing), except on its f32 fallback, which does not round at all.
const roundsTo = (p: MatmulPrecision, device: Tensor['device']): Half | null => {
  if (p === 'fp16') return 'f16';
  if (p !== 'bf16') return null;
  if (device !== 'cpu') return 'bf16';
  return cpuBf16Copies && addon().bf16GemmKernel() !== 'f32' ? 'bf16' : null;
};

type GemmBinding = ReturnType<typeof addon>['gemm'];

// A gemm binding for f32 operands that first rounds the region each operand's arguments span to
// `half` (native cast) and runs the 16-bit GEMM on the rounded copies (f32GemmAtPrecision).
function roundingGemm(half: Half, device: Tensor['device']): GemmBinding {
  return (transA, transB, M, N, K, alpha, A, aOff, lda, strideA, B, bOff, ldb, strideB, beta, C, cOff, ldc, strideC, batch) => {
    const span = (rows: number, cols: number, ld: number, stride: number): number =>
      rows === 0 || cols === 0 || batch === 0 ? 0 : (batch - 1) * stride + (rows - 1) * ld + cols;
    const round = (s: typeof A, off: number, n: number): Tensor => {
      const t = Tensor.empty([n], { dtype: half, device });
      if (n > 0) addon().cast(t.storage, t.offset, half, s, off, 'f32', n);
      return t;
    };
    const a16 = round(A, aOff, span(transA ? K : M, transA ? M : K, lda, strideA));
    const b16 = round(B, bOff, span(transB ? N : K, transB ? K : N, ldb, strideB));
    try {
      gemmOn(half, false, transA, transB, M, N, K, alpha, a16, lda, strideA, b16, ldb, strideB, beta, C, cOff, ldc, strideC, batch);
    } finally {
      a16.dispose();
      b16.dispose();
    }
  };
}

// The GEMM for operands A and B of one dtype, C f32. f16: gemmF16 (cuBLASLt on CUDA; on the CPU,
// which has no f16 kernel, the operands widened exactly to f32 and the f32 GEMM). bf16 on CUDA:
// cuBLASLt (gemmBf16's CUDA kernel), which has no separate bf16-compute entry.
function gemmOn(
  dtype: Tensor['dtype'], bf16: boolean, transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Tensor, lda: number, strideA: number, B: Tensor, ldb: number, strideB: number,
  beta: number, C: NativeStorage, cOff: number, ldc: number, strideC: number, batch: number,
): void {
  const a = addon();
  const run = dtype === 'f16' ? a.gemmF16
    : dtype === 'bf16' ? (bf16 && A.device === 'cpu' ? a.gemmBf16ComputeBf16 : a.gemmBf16)
      : bf16 ? a.gemmBf16Compute : a.gemm;
  run(transA, transB, M, N, K, alpha, A.storage, A.offset, lda, strideA, B.storage, B.offset, ldb, strideB, beta, C, cOff, ldc, strideC, batch);
}

/**
 * The GEMM binding (gemm's arguments) for f32 operands of `like`'s device at the current matmul
 * precision: for fused ops that call the GEMM themselves (the LM head of linearCrossEntropy).
 * Take it in the forward and keep it for the backward, which then runs at the same precision.
 */
export function f32GemmAtPrecision(like: Tensor): GemmBinding {
  if (computesInBf16(precision, like)) return addon().gemmBf16Compute;
  const half = roundsTo(precision, like.device);
  return half ? roundingGemm(half, like.device) : addon().gemm;
}

/** A GEMM for fused ops at one matmul precision (gemmAtPrecision). */
export interface PrecisionGemm {
  /** The copy of an f32 operand (the upstream gradient included) that `gemm` reads, or the operand itself; the caller disposes a copy. */
  operand(t: Tensor): Tensor;
  /** The GEMM binding (gemm's arguments) for such operands, f32 C. */
  gemm: GemmBinding;
}

/**
 * The GEMM of the current precision on `like`'s device for fused ops that run it on storage
 * themselves (linearCrossEntropy): round each operand once with `operand` and reuse the copy
 * across chunks and for backward. At 'bf16' on the CPU, and at 'f32', operands are read as they
 * are; at 'fp16' on the CPU they are rounded to f16 and widened back (the f32 GEMM reads them);
 * on CUDA at 16 bits they are 16-bit tensors read by cuBLASLt's 16-bit GEMM.
 */
export function gemmAtPrecision(like: Tensor): PrecisionGemm {
  if (computesInBf16(precision, like)) return { operand: (t) => t, gemm: addon().gemmBf16Compute };
  const half = roundsTo(precision, like.device);
  if (!half) return { operand: (t) => t, gemm: f32GemmAtPrecision(like) };
  if (like.device === 'cpu') {
    return {
      operand: (t) => {
        const r = t.to(half);
        const w = r.to('f32');
        r.dispose();
        return w;
      },
      gemm: addon().gemm,
    };
  }
  return { operand: (t) => t.to(half), gemm: half === 'f16' ? addon().gemmF16 : addon().gemmBf16 };
}

// C (batch, M, N) = op(A) @ op(B) + beta * C on tensors' storage (A and B of one dtype). lda/ldb
// are the stored row widths; strides are per batch item (0 broadcasts). bf16: through the
// bf16-compute GEMM.
function gemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  A: Tensor, lda: number, strideA: number, B: Tensor, ldb: number, strideB: number,
  C: Tensor, strideC: number, batch: number, beta = 0, bf16 = false,
): void {
  gemmOn(A.dtype, bf16, transA, transB, M, N, K, 1, A, lda, strideA, B, ldb, strideB, beta, C.storage, C.offset, N, strideC, batch);
}

// The 16-bit copy of an f32 operand that a rounding precision computes with, or the operand itself.
const rounded = (t: Tensor, half: Half | null): Tensor => (half && t.dtype === 'f32' ? t.to(half) : t);

function expectInputs(op: string, a: Tensor, b: Tensor, names: [string, string]): void {
  expectKernel(op, a.dtype === 'bf16' || b.dtype === 'bf16' ? 'gemmBf16' : 'gemm', a, b);
  expectDType(op, names[0], a, 'f32', 'bf16');
  expectDType(op, names[1], b, a.dtype);
  if (a.dtype === 'bf16' && isGradEnabled() && (a.requiresGrad || b.requiresGrad))
    throw new PatentGPTError('E_AUTOGRAD', `${op}: bf16 inputs are not differentiable; cast them with .to('f32') or use noGrad()`);
}

/**
 * op(a) @ op(b) over leading batch dimensions: a (..., M, K) ((..., K, M) with transA), b
 * (..., K, N) ((..., N, K) with transB) with the same batch dimensions, or a 2-D b shared by every
 * batch item. Returns f32 (..., M, N); bf16 inputs (both) are widened to f32 inside the kernel.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (a.shape.length < 2 || b.shape.length < 2)
    throw new PatentGPTError('E_SHAPE', `matmul: a ${a.describe()} and b ${b.describe()} need at least 2 dimensions`);
  expectInputs('matmul', a, b, ['a', 'b']);
  const ar = a.shape[a.shape.length - 2]!, ac = a.shape[a.shape.length - 1]!;
  const br = b.shape[b.shape.length - 2]!, bc = b.shape[b.shape.length - 1]!;
  const [M, K] = transA ? [ac, ar] : [ar, ac];
  const [Kb, N] = transB ? [bc, br] : [br, bc];
  const flags = `${transA ? ' transA' : ''}${transB ? ' transB' : ''}`;
  if (K !== Kb)
    throw new PatentGPTError('E_SHAPE', `matmul${flags}: a ${a.describe()} is (M ${M}, K ${K}) but b ${b.describe()} has K ${Kb}`);
  const batchDims = a.shape.slice(0, -2);
  const broadcastB = b.shape.length === 2;
  if (!broadcastB && (b.shape.length !== a.shape.length || batchDims.some((d, i) => d !== b.shape[i])))
    throw new PatentGPTError('E_SHAPE', `matmul: batch dimensions of a ${a.describe()} and b ${b.describe()} differ (b may also be 2-D)`);
  const batch = batchDims.reduce((x, y) => x * y, 1);
  const sa = M * K, sb = broadcastB ? 0 : K * N, sc = M * N;

  const out = Tensor.empty([...batchDims, M, N], { device: a.device });
  const half = a.dtype === 'f32' ? roundsTo(precision, a.device) : null;
  const bf16 = computesInBf16(precision, a);
  const A = rounded(a, half), B = rounded(b, half);
  gemm(transA, transB, M, N, K, A, ac, sa, B, bc, sb, out, sc, batch, 0, bf16);
  // Rounded copies: dA reads only B and dB only A, so the tape keeps only what a gradient needs.
  const saved = half ? [...(a.requiresGrad ? [B] : []), ...(b.requiresGrad ? [A] : [])] : [a, b];

  const result = record('matmul', out, [a, b], saved, (g) => {
    const G = rounded(g, half); // the upstream gradient is rounded like the inputs
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    try {
      if (a.requiresGrad) {
        da = Tensor.empty(a.shape, { device: a.device });
        if (!transA) gemm(false, !transB, M, K, N, G, N, sc, B, bc, sb, da, sa, batch, 0, bf16); // dA = G op(B)^T
        else gemm(transB, true, K, M, N, B, bc, sb, G, N, sc, da, sa, batch, 0, bf16); // dA = op(B) G^T
      }
      if (b.requiresGrad) {
        db = Tensor.empty(b.shape, { device: a.device });
        if (broadcastB && !transA) {
          // a's rows are contiguous across the batch: one product over batch * M rows sums it.
          if (!transB) gemm(true, false, K, N, batch * M, A, ac, 0, G, N, 0, db, 0, 1, 0, bf16);
          else gemm(true, false, N, K, batch * M, G, N, 0, A, ac, 0, db, 0, 1, 0, bf16);
        } else {
          // stride 0 for a broadcast dB: the kernel adds the batch's items into one matrix in order.
          const sdb = broadcastB ? 0 : sb;
          if (!transB) gemm(!transA, false, K, N, M, A, ac, sa, G, N, sc, db, sdb, batch, 0, bf16); // dB = op(A)^T G
          else gemm(true, transA, N, K, M, G, N, sc, A, ac, sa, db, sdb, batch, 0, bf16); // dB = G^T op(A)
        }
      }
    } finally {
      if (G !== g) G.dispose();
    }
    return [da, db];
  });
  // The tape holds its own references to the copies it saved.
  if (A !== a) A.dispose();
  if (B !== b) B.dispose();
  return result;
}

// The last rounded copy of an input that linear() made and the tape still holds: the next linear
// of the same tensor (k and v after q, up after gate, a LoRA adapter after its base) reads and
// keeps that one instead of a copy of its own. A tensor the tape saved must not change in place,
// so a live copy is still its rounding.
let lastInput: { src: Tensor; half: Half; copy: Tensor } | null = null;

function roundedInput(x: Tensor, half: Half | null): Tensor {
  if (!half || x.dtype !== 'f32') return x;
  if (lastInput && lastInput.src === x && lastInput.half === half && !lastInput.copy.disposed) return lastInput.copy;
  const copy = x.to(half);
  lastInput = { src: x, half, copy };
  return copy;
}

/** Most rows of x that linear() sends to the GEMV (native/cpu/gemv.cpp) rather than the GEMM. */
export const GEMV_MAX_ROWS = 64;

/**
 * x @ weight^T: x (..., in), weight (out, in) as Hugging Face stores nn.Linear (no bias, as in
 * LLaMA) -> (..., out). Backward: dx = dy @ W, dW = dy^T @ x over every row of x.
 */
export function linear(x: Tensor, weight: Tensor): Tensor {
  expectRank('linear', 'weight', weight, 2);
  if (x.shape.length < 1) throw new PatentGPTError('E_SHAPE', `linear: x ${x.describe()} needs at least 1 dimension`);
  expectInputs('linear', x, weight, ['x', 'weight']);
  const [outF, inF] = weight.shape as [number, number];
  const xin = x.shape[x.shape.length - 1]!;
  if (xin !== inF)
    throw new PatentGPTError('E_SHAPE', `linear: x ${x.describe()} has ${xin} features but weight ${weight.describe()} (out, in) takes ${inF}`);
  const rows = inF === 0 ? x.shape.slice(0, -1).reduce((p, d) => p * d, 1) : x.size / inF;
  const y = Tensor.empty([...x.shape.slice(0, -1), outF], { device: x.device });
  const half = x.dtype === 'f32' ? roundsTo(precision, x.device) : null;
  const bf16 = computesInBf16(precision, x);
  const X = roundedInput(x, half), W = rounded(weight, half);
  // A few rows (decoding) stream the weights once through the CPU GEMV instead of packing them;
  // on CUDA every shape goes to cuBLASLt.
  if (x.device === 'cpu' && x.dtype === 'f32' && !bf16 && !half && rows > 0 && rows <= GEMV_MAX_ROWS) addon().gemv(y.storage, y.offset, x.storage, x.offset, weight.storage, weight.offset, rows, outF, inF, false);
  else gemm(false, true, rows, outF, inF, X, inF, 0, W, inF, 0, y, 0, 1, 0, bf16);
  // dW reads the rounded copy of x (an activation: its f32 tensor may be freed after the forward)
  // and dx the weight: the f32 one (a parameter, alive anyway; a 16-bit copy kept until backward
  // would add half its bytes), rounded again there. Only what a gradient needs is kept.
  const saved = half ? [...(x.requiresGrad ? [weight] : []), ...(weight.requiresGrad ? [X] : [])] : [x, weight];

  const result = record('linear', y, [x, weight], saved, (g) => {
    const G = rounded(g, half); // rounded once, read by both products
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    try {
      if (x.requiresGrad) {
        dx = Tensor.empty(x.shape, { device: x.device });
        const Wb = rounded(weight, half);
        try {
          gemm(false, false, rows, inF, outF, G, outF, 0, Wb, inF, 0, dx, 0, 1, 0, bf16); // dx = dy @ W
        } finally {
          if (Wb !== weight) Wb.dispose();
        }
      }
      if (weight.requiresGrad) {
        dw = Tensor.empty(weight.shape, { device: x.device });
        gemm(true, false, outF, inF, rows, G, outF, 0, X, inF, 0, dw, 0, 1, 0, bf16); // dW = dy^T @ x
      }
    } finally {
      if (G !== g) G.dispose();
    }
    return [dx, dw];
  });
  if (X !== x) X.dispose();
  if (W !== weight) W.dispose();
  return result;
}
