// Weight-only quantization (native/cpu/quant*.cpp): llama.cpp's Q8_0, Q4_0 and Q4_K blocks, byte
// for byte as GGUF stores them, and the product of x with such a matrix (inference only, not
// differentiable). A QuantizedMatrix (rows, cols) holds its rows' blocks in an i32 tensor (the
// bytes as 4-byte words), the form the native GEMV and the fused decode path read in place.
//   Q8_0: 32 weights per 34-byte block (f16 d, int8 q):           w = d * q
//   Q4_0: 32 weights per 18-byte block (f16 d, 16 bytes of nibbles): w = d * (q - 8)
//   Q4_K: 256 weights per 144-byte super-block (f16 d, dmin, 6-bit scales and mins of 8 sub-blocks)
//   F16, BF16: one 16-bit float per weight (llama.cpp's unquantized GGUF types)
// The product quantizes each row of x to Q8_0 blocks first (for Q8_0 and Q4_0 weights), as
// llama.cpp does before its integer dot products; F16 weights meet x in f32, BF16 weights x rounded to bf16.
import { PatentGPTError } from '../../errors.js';
import { addon } from '../../native/loader.js';
import { expectDType, expectKernel } from '../check.js';
import { keep } from '../scope.js';
import { Tensor } from '../tensor.js';

export type QuantType = 'q8_0' | 'q4_0' | 'q4_k' | 'f16' | 'bf16';
export const QUANT_TYPES: readonly QuantType[] = ['q8_0', 'q4_0', 'q4_k', 'f16', 'bf16'];

/** GGML's tensor type ids (GGUF): GGML_TYPE_F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, BF16 = 30. */
export const GGML_TYPE_ID: Readonly<Record<QuantType, number>> = { q8_0: 8, q4_0: 2, q4_k: 12, f16: 1, bf16: 30 };

const BLOCK: Readonly<Record<QuantType, { weights: number; bytes: number; rowMultiple: number }>> = {
  q8_0: { weights: 32, bytes: 34, rowMultiple: 64 },
  q4_0: { weights: 32, bytes: 18, rowMultiple: 64 },
  q4_k: { weights: 256, bytes: 144, rowMultiple: 256 },
  f16: { weights: 1, bytes: 2, rowMultiple: 32 },
  bf16: { weights: 1, bytes: 2, rowMultiple: 32 },
};

/** Whether `type` is a 16-bit float type (f16, bf16) rather than a block quantization. */
export function isHalfType(type: QuantType): boolean {
  return type === 'f16' || type === 'bf16';
}

/** The quantized type with GGML id `id`, or undefined. */
export function quantTypeOfGgml(id: number): QuantType | undefined {
  return QUANT_TYPES.find((t) => GGML_TYPE_ID[t] === id);
}

/** Validates a type name from a user (CLI, config). */
export function checkQuantType(value: unknown, what = 'type'): QuantType {
  if (typeof value === 'string' && (QUANT_TYPES as readonly string[]).includes(value.toLowerCase())) return value.toLowerCase() as QuantType;
  throw new PatentGPTError('E_ARGUMENT', `${what} must be one of ${QUANT_TYPES.join(', ')}, got ${JSON.stringify(value)}`);
}

/** Whether rows of `cols` weights fit `type`'s blocks (a multiple of 64, of 256 for q4_k, of 32 for f16 and bf16). */
export function quantFits(type: QuantType, cols: number): boolean {
  return Number.isInteger(cols) && cols > 0 && cols % BLOCK[type].rowMultiple === 0;
}

/** Bytes of one row of `cols` weights in `type`'s blocks. */
export function quantRowBytes(type: QuantType, cols: number): number {
  if (!quantFits(type, cols))
    throw new PatentGPTError('E_SHAPE', `${type}: rows of ${cols} weights do not fill whole blocks (need a multiple of ${BLOCK[type].rowMultiple})`);
  return (cols / BLOCK[type].weights) * BLOCK[type].bytes;
}

/** A weight matrix W (rows, cols) as nn.Linear stores it, in llama.cpp's blocks. */
export class QuantizedMatrix {
  /** Its blocks as (rows, rowBytes / 4) i32 words; kept past scopes, freed by dispose(). */
  readonly data: Tensor;
  constructor(readonly type: QuantType, readonly rows: number, readonly cols: number, data: Tensor) {
    const rb = quantRowBytes(type, cols);
    expectDType('QuantizedMatrix', 'data', data, 'i32');
    if (data.size * 4 !== rows * rb)
      throw new PatentGPTError('E_SHAPE', `QuantizedMatrix: ${type} (${rows}, ${cols}) needs ${rows * rb} bytes, data ${data.describe()} holds ${data.size * 4}`);
    this.data = keep(data);
  }
  get shape(): [number, number] {
    return [this.rows, this.cols];
  }
  get byteLength(): number {
    return this.data.size * 4;
  }
  describe(): string {
    return `${this.type}[${this.rows}, ${this.cols}]`;
  }
  /** A matrix from its GGUF bytes (rows * quantRowBytes, row after row). */
  static fromBytes(type: QuantType, rows: number, cols: number, bytes: Uint8Array): QuantizedMatrix {
    const n = rows * quantRowBytes(type, cols);
    if (bytes.length !== n) throw new PatentGPTError('E_FORMAT', `${type} (${rows}, ${cols}) needs ${n} bytes, got ${bytes.length}`);
    const words = new Int32Array(n / 4);
    new Uint8Array(words.buffer).set(bytes);
    return new QuantizedMatrix(type, rows, cols, Tensor.from(words, [rows, n / 4 / rows], { dtype: 'i32' }));
  }
  /** Its bytes as GGUF stores them. */
  bytes(): Uint8Array {
    const w = this.data.toRaw() as Int32Array;
    return new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  }
  /** The same matrix with its rows in a new order: row i of the result is row order[i] (quantized rows move whole). */
  permuteRows(order: ArrayLike<number>): QuantizedMatrix {
    const rb = quantRowBytes(this.type, this.cols);
    const src = this.bytes();
    const out = new Uint8Array(src.length);
    for (let i = 0; i < this.rows; i++) out.set(src.subarray(order[i]! * rb, (order[i]! + 1) * rb), i * rb);
    return QuantizedMatrix.fromBytes(this.type, this.rows, this.cols, out);
  }
  dispose(): void {
    this.data.dispose();
  }
}

/** W (rows, cols) f32 on the CPU -> its blocks, by llama.cpp's reference quantizer of `type`. */
export function quantize(w: Tensor, type: QuantType): QuantizedMatrix {
  const op = 'quantize';
  expectDType(op, 'w', w, 'f32');
  expectKernel(op, 'quantize', w);
  if (w.shape.length !== 2) throw new PatentGPTError('E_SHAPE', `${op}: w ${w.describe()} must be (rows, cols)`);
  const [rows, cols] = w.shape as [number, number];
  const rb = quantRowBytes(type, cols);
  const data = Tensor.empty([rows, rb / 4], { dtype: 'i32', device: w.device });
  try {
    addon().quantize(data.storage, data.offset, w.storage, w.offset, GGML_TYPE_ID[type], rows, cols);
    return new QuantizedMatrix(type, rows, cols, data);
  } catch (err) {
    data.dispose();
    throw err;
  }
}

/** The f32 weights (rows, cols) the blocks stand for (llama.cpp's dequantize_row_*). */
export function dequantize(q: QuantizedMatrix): Tensor {
  const out = Tensor.empty([q.rows, q.cols], { device: q.data.device });
  addon().dequantize(out.storage, out.offset, q.data.storage, q.data.offset, GGML_TYPE_ID[q.type], q.rows, q.cols);
  return out;
}

/**
 * x (..., cols) @ W^T -> (..., rows) for a quantized W, through the quantized GEMV (each row of x
 * quantized as llama.cpp does). Inference only: not recorded for autograd.
 */
export function quantLinear(x: Tensor, w: QuantizedMatrix): Tensor {
  const op = 'quantLinear';
  expectDType(op, 'x', x, 'f32');
  expectKernel(op, 'quantGemv', x, w.data);
  const inF = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || inF !== w.cols)
    throw new PatentGPTError('E_SHAPE', `${op}: x ${x.describe()} must end in ${w.cols} features to meet W ${w.describe()}`);
  const rows = x.size / w.cols;
  const y = Tensor.empty([...x.shape.slice(0, -1), w.rows], { device: x.device });
  if (rows > 0) addon().quantGemv(y.storage, y.offset, x.storage, x.offset, w.data.storage, w.data.offset, GGML_TYPE_ID[w.type], rows, w.rows, w.cols, false);
  return y;
}

/** The quantized GEMV's kernel on this CPU: 'vnni', 'avx2' or 'scalar' (setSimdLevel caps it). */
export function quantGemvKernel(): string {
  return addon().quantGemvKernel();
}
