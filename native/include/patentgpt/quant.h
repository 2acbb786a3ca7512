// Weight-only quantization (native/cpu/quant*.cpp): llama.cpp's block formats, bit for bit, so a
// GGUF of ours and our engine run the same weights, and a GEMV that reads them in place.
//
//   Q8_0: blocks of 32 weights: f16 d, int8 qs[32];                    w = d * q          (34 B)
//   Q4_0: blocks of 32 weights: f16 d, uint8 qs[16] (nibbles);         w = d * (q - 8)    (18 B)
//         byte j holds weight j (low nibble) and weight j + 16 (high nibble)
//   Q4_K: super-blocks of 256: f16 d, f16 dmin, uint8 scales[12], uint8 qs[128]         (144 B)
//         eight sub-blocks of 32 with 6-bit scale sc and min m (get_scale_min_k4's packing);
//         w = d * sc * q - dmin * m; bytes [32 i, 32 i + 32) of qs hold sub-block 2 i (low
//         nibbles) and 2 i + 1 (high nibbles)
//   F16, BF16: one 16-bit float per weight (IEEE half; bfloat16, the top half of an f32), as
//         llama.cpp's unquantized GGUF types.
// A quantized matrix W (N, K) is N rows of K / block weights each, row after row, as GGUF
// stores it; K must be a multiple of the block (and of 64 for Q8_0/Q4_0, so rows are whole
// 4-byte words; of 32 for F16/BF16).
//
// The GEMV y (M, N) (+)= x (M, K) @ W^T quantizes each row of x as llama.cpp does before its
// dot products: for Q8_0 and Q4_0 weights into Q8_0 blocks (d = amax / 127 rounded to f16, q =
// round-to-nearest-even(x * 127 / amax), as ggml's x86 quantize_row_q8_0), then per block the
// exact integer dot of the q's times d_w * d_x (VNNI vpdpbusd where the CPU has it); Q4_K weights
// meet x in f32 (dequantized in registers). The scalar reference (quant_gemv_ref) does the same
// arithmetic in plain loops, so every ISA matches it to float summation order. F16 weights meet
// x in f32, BF16 weights x rounded to bf16, in f32 sums (quant_kernels.h).
#pragma once
#include <cstdint>

namespace pg {

// GGML's type ids (GGUF tensor types).
enum class QuantType : int32_t { F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q4_K = 12, BF16 = 30 };

bool quant_type_valid(int32_t t);  // one of the ids above
const char* quant_type_name(QuantType t);
int64_t quant_block_weights(QuantType t);  // 32, 32, 256 (F32, F16, BF16: 1)
int64_t quant_block_bytes(QuantType t);    // 34, 18, 144 (F32: 4, F16 and BF16: 2)
// Bytes of one row of K weights, or -1 when K is not a whole number of blocks (nor of 64 for
// Q8_0/Q4_0).
int64_t quant_row_bytes(QuantType t, int64_t K);

// IEEE half <-> float, round to nearest even (as F16C's vcvtps2ph, which ggml uses on x86).
uint16_t fp32_to_fp16(float f);
float fp16_to_fp32(uint16_t h);
// float -> bfloat16 as ggml_compute_fp32_to_bf16: round to nearest even, NaN kept quiet.
uint16_t fp32_to_bf16(float f);
float bf16_to_fp32(uint16_t h);

// dst (rows, quant_row_bytes) = llama.cpp's reference quantizer of each row of src (rows, K)
// (quantize_row_q8_0_ref, _q4_0_ref, _q4_K_ref; F16, BF16: each weight rounded).
void quantize_rows(QuantType t, uint8_t* dst, const float* src, int64_t rows, int64_t K);
// dst (rows, K) = the weights of src (rows, quant_row_bytes) (dequantize_row_*).
void dequantize_rows(QuantType t, float* dst, const uint8_t* src, int64_t rows, int64_t K);

// y (M, N) (+)= x (M, K) @ W (N, K)^T for quantized W (rows of quant_row_bytes), rows [j0, j1) of
// W, on the calling thread. Quantizes x itself (into this thread's scratch).
void quant_gemv_rows(QuantType t, const uint8_t* w, float* y, int64_t ldy, bool accumulate, const float* x,
                     int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1);
// The same over all N rows, on the pool's threads when W is large enough.
void quant_gemv(QuantType t, float* y, int64_t ldy, const float* x, int64_t ldx, const uint8_t* w, int64_t M,
                int64_t N, int64_t K, bool accumulate);
// The plain-loop reference of quant_gemv (same quantization of x, same per-block products); f16_x
// as quant_f16_rounds_x() says for the kernel it stands for.
void quant_gemv_ref(QuantType t, float* y, int64_t ldy, const float* x, int64_t ldx, const uint8_t* w, int64_t M,
                    int64_t N, int64_t K, bool accumulate, bool f16_x = false);
// Whether quant_gemv at the current simd level rounds x to f16 before it meets F16 weights: where
// it runs the AVX2 kernel, as llama.cpp's AVX2 build does (ggml's vec_dot_type for F16); its
// AVX-512 build was measured keeping x in f32 (quant_kernels.h).
bool quant_f16_rounds_x();
// Which kernel quant_gemv runs on this CPU at the current simd level: "vnni", "avx2", "scalar".
const char* quant_gemv_kernel_name();

}  // namespace pg
