// Matrix products: matmul (batched, optional transposes, a 2-D right side broadcast over the
// batch) and linear (Hugging Face weight layout, no bias). Both run on native/cpu/gemm.cpp (or,
// at matmul precision 'bf16', native/cpu/gemm_bf16.cpp) and are differentiable in both inputs;
// their backward passes are GEMMs too, with the transposes folded into the kernel's flags rather
// than materialised.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
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
 * How matmul and linear compute: 'f32', or 'bf16' (mixed precision: inputs rounded to bf16 while
 * the GEMM packs them, products summed in f32, f32 results and gradients; the kernel uses AMX or
 * AVX-512 BF16 where the CPU has them, else it is the f32 GEMM). Tensors stay f32 either way.
 */
export type MatmulPrecision = 'f32' | 'bf16';
export const MATMUL_PRECISIONS: readonly MatmulPrecision[] = ['f32', 'bf16'];

let precision: MatmulPrecision = 'f32';

/** The precision of the matmuls recorded from now on (a backward pass uses its forward's). */
export function matmulPrecision(): MatmulPrecision {
  return precision;
}

/** Sets the matmul precision process-wide (the trainer sets its stage's); returns the previous one. */
export function setMatmulPrecision(p: MatmulPrecision): MatmulPrecision {
  if (!MATMUL_PRECISIONS.includes(p))
    throw new PatentGPTError('E_ARGUMENT', `setMatmulPrecision: precision must be ${MATMUL_PRECISIONS.map((x) => `"${x}"`).join(' or ')}, got ${JSON.stringify(p)}`);
  const previous = precision;
  precision = p;
  return previous;
}

/** The kernel that runs bf16-precision matmuls on this machine: 'amx', 'avx512bf16' or 'f32'. */
export function bf16MatmulKernel(): 'amx' | 'avx512bf16' | 'f32' {
  return addon().bf16GemmKernel();
}

// bf16 compute exists on the CPU; elsewhere a matmul keeps the f32 kernel.
const computesInBf16 = (p: MatmulPrecision, t: Tensor): boolean => p === 'bf16' && t.device === 'cpu';

type GemmBinding = ReturnType<typeof addon>['gemm'];

/**
 * The GEMM binding (gemm's arguments) for f32 operands of `like`'s device at the current matmul
 * precision: for fused ops that call the GEMM themselves (the LM head of linearCrossEntropy).
 * Take it in the forward and keep it for the backward, which then runs at the same precision.
 */
export function f32GemmAtPrecision(like: Tensor): GemmBinding {
  return computesInBf16(precision, like) ? addon().gemmBf16Compute : addon().gemm;
}

// C (batch, M, N) = alpha * op(A) @ op(B) + beta * C on tensors' storage. lda/ldb are the stored
// row widths; strides are per batch item (0 broadcasts). bf16: through the bf16-compute GEMM.
function gemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number,
  A: Tensor, lda: number, strideA: number, B: Tensor, ldb: number, strideB: number,
  C: Tensor, strideC: number, batch: number, beta = 0, bf16 = false,
): void {
  const a = addon();
  const run = A.dtype === 'bf16' ? (bf16 ? a.gemmBf16ComputeBf16 : a.gemmBf16) : (bf16 ? a.gemmBf16Compute : a.gemm);
  run(transA, transB, M, N, K, 1, A.storage, A.offset, lda, strideA, B.storage, B.offset, ldb, strideB,
    beta, C.storage, C.offset, N, strideC, batch);
}

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
  const bf16 = computesInBf16(precision, a);
  gemm(transA, transB, M, N, K, a, ac, sa, b, bc, sb, out, sc, batch, 0, bf16);

  return record('matmul', out, [a, b], [a, b], (g) => {
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (a.requiresGrad) {
      da = Tensor.empty(a.shape, { device: a.device });
      if (!transA) gemm(false, !transB, M, K, N, g, N, sc, b, bc, sb, da, sa, batch, 0, bf16); // dA = G op(B)^T
      else gemm(transB, true, K, M, N, b, bc, sb, g, N, sc, da, sa, batch, 0, bf16); // dA = op(B) G^T
    }
    if (b.requiresGrad) {
      db = Tensor.empty(b.shape, { device: a.device });
      if (broadcastB && !transA) {
        // a's rows are contiguous across the batch: one product over batch * M rows sums it.
        if (!transB) gemm(true, false, K, N, batch * M, a, ac, 0, g, N, 0, db, 0, 1, 0, bf16);
        else gemm(true, false, N, K, batch * M, g, N, 0, a, ac, 0, db, 0, 1, 0, bf16);
      } else {
        // stride 0 for a broadcast dB: the kernel adds the batch's items into one matrix in order.
        const sdb = broadcastB ? 0 : sb;
        if (!transB) gemm(!transA, false, K, N, M, a, ac, sa, g, N, sc, db, sdb, batch, 0, bf16); // dB = op(A)^T G
        else gemm(true, transA, N, K, M, g, N, sc, a, ac, sa, db, sdb, batch, 0, bf16); // dB = G^T op(A)
      }
    }
    return [da, db];
  });
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
  // A few rows (decoding) stream the weights once through the CPU GEMV instead of packing them;
  // on CUDA every shape goes to cuBLASLt.
  const bf16 = computesInBf16(precision, x);
  if (x.device === 'cpu' && x.dtype === 'f32' && !bf16 && rows > 0 && rows <= GEMV_MAX_ROWS) addon().gemv(y.storage, y.offset, x.storage, x.offset, weight.storage, weight.offset, rows, outF, inF, false);
  else gemm(false, true, rows, outF, inF, x, inF, 0, weight, inF, 0, y, 0, 1, 0, bf16);

  return record('linear', y, [x, weight], [x, weight], (g) => {
    let dx: Tensor | null = null;
    let dw: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty(x.shape, { device: x.device });
      gemm(false, false, rows, inF, outF, g, outF, 0, weight, inF, 0, dx, 0, 1, 0, bf16); // dx = dy @ W
    }
    if (weight.requiresGrad) {
      dw = Tensor.empty(weight.shape, { device: x.device });
      gemm(true, false, outF, inF, rows, g, outF, 0, x, inF, 0, dw, 0, 1, 0, bf16); // dW = dy^T @ x
    }
    return [dx, dw];
  });
}
