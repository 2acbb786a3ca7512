// Which type each tensor of a quantized model takes, following llama.cpp's llama-quantize for a
// model of that type (llama_tensor_get_type), so our GGUF reads as one of llama.cpp's own:
//   - norms (1-D) stay f32;
//   - the seven projections of every layer take the model's type;
//   - the token embedding takes the model's type (llama.cpp's get_rows dequantizes it);
//   - the output matrix (or, tied, the token embedding, which is then the output) takes Q8_0:
//     llama.cpp keeps it at Q8_0 for a Q8_0 model and raises it to Q6_K for 4-bit ones; this
//     package has no Q6_K, and Q8_0 is the type llama.cpp itself falls back to for it;
//   - F16 and BF16 models (llama.cpp's convert_hf_to_gguf --outtype f16/bf16) take their type for
//     every matrix, the output and the token embedding included;
//   - a matrix whose rows do not fill the type's blocks (Q4_K: multiples of 256) falls back to
//     Q8_0 (llama.cpp falls back to Q5_0, which this package does not have), and to f32 when
//     not even Q8_0's 64 fit.
// The engine (src/infer/quantized.ts) applies the same rule to a model in memory, so the GGUF
// and the engine hold the same bits.
import { isHalfType, quantFits, type QuantType } from '../tensor/index.js';

export type TensorRole = 'projection' | 'embedding' | 'output';

/** The type of a (rows, cols) matrix of `role` in a model quantized to `type`. */
export function quantTypeFor(role: TensorRole, cols: number, type: QuantType, tied = false): QuantType | 'f32' {
  const want: QuantType = (role === 'output' || (role === 'embedding' && tied)) && !isHalfType(type) ? 'q8_0' : type;
  if (quantFits(want, cols)) return want;
  return quantFits('q8_0', cols) ? 'q8_0' : 'f32';
}

/** general.file_type of a model quantized to `type` (llama.cpp's LLAMA_FTYPE_MOSTLY_*). */
export const GGUF_FILE_TYPE: Readonly<Record<QuantType, number>> = { q4_0: 2, q8_0: 7, q4_k: 14, f16: 1, bf16: 32 };
