// Sparse mixture of experts over the experts' own weight storages (native/cpu/moe.cpp,
// native/cpu/decode.cpp): each expert's w1, w3, w2 are separate parameters (experts.N.w1.weight,
// updated in place by optimizers), so these kernels take one pointer per expert instead of a
// stacked (E, out, in) copy. Conventions as ops.h: outputs first, no allocation; parameter
// gradients here are WRITTEN (=), one fresh buffer per expert, an expert with no rows zero-filled.
#pragma once
#include <cstdint>

namespace pg {

struct DecodeQkvArgs;   // patentgpt/gemv.h
struct PagedAttention;  // patentgpt/paged_attention.h

// One row of moe_router_forward: idx, w (k) from logits l (E), on the calling thread.
void moe_router_row(int32_t* idx, float* w, const float* l, int64_t E, int64_t k, bool normalize);

// y (M, O): rows offsets[e]..offsets[e+1] of xs (M, I) times w[e]^T, w[e] (O, I) each (E pointers).
void moe_experts_gemm_forward(float* y, const float* xs, const float* const* w, const int32_t* offsets, int64_t E,
                              int64_t O, int64_t I);
// dxs (M, I) written (may be null); dw[e] (O, I) written for every e (dw itself may be null), zeros
// for an expert with no rows. dy (M, O).
void moe_experts_gemm_backward(float* dxs, float* const* dw, const float* dy, const float* xs, const float* const* w,
                               const int32_t* offsets, int64_t E, int64_t O, int64_t I);

// ---- decode.cpp: the sparse MoE feed-forward of a few decode rows, one parallel region ----
// x (M, C) += sum over each row's top-k experts of weight * w2(silu(w1 h) * w3 h), plus every
// shared expert's output, h = rmsnorm(x, norm_w); routing as moe_router_forward (normalize).
// Only the chosen experts' weights are read. experts: 3 * (E + S) pointers, expert e's w1, w3 (F, C)
// and w2 (C, F) at 3e, 3e + 1, 3e + 2, the S shared experts after the E routed ones.
// h (M, C) and the two scratch buffers (sizes below) are the caller's.
struct DecodeMoeArgs {
  float* h;
  float* scratch;  // decode_moe_scratch_floats(M, C, F, E, k, S)
  int32_t* index;  // decode_moe_index_ints(M, E, k)
  const float* norm_w;
  float eps;
  const float* gate;             // (E, C)
  const float* const* experts;   // 3 * (E + S)
  int64_t M, C, F, E, k, S;
};
int64_t decode_moe_scratch_floats(int64_t M, int64_t C, int64_t F, int64_t E, int64_t k, int64_t S);
int64_t decode_moe_index_ints(int64_t M, int64_t E, int64_t k);
void decode_moe_ffn(float* x, const DecodeMoeArgs& a);
// decode_layer (gemv.h) with this feed-forward in place of the SwiGLU MLP.
void decode_layer_moe(float* x, const DecodeQkvArgs& qkv, const PagedAttention& attn, const float* wo,
                      const DecodeMoeArgs& moe);

}  // namespace pg
