// Skinny products for decoding (native/cpu/gemv*.cpp): y (M, N) = x (M, K) @ W^T for a few rows
// (M = 1 .. 64: one decode token per running sequence) with W (N, K) as nn.Linear stores it.
// Such a product is memory-bound: it streams every weight once, straight from its storage (no
// packing), and uses each loaded weight vector for all M rows of x while it is in registers.
#pragma once
#include <cstdint>

namespace pg {

// One weight matrix of a fused product: rows (its N) of `k` floats at `w` (row stride ldw); its
// outputs go to y (M rows, row stride ldy). accumulate: y += x W^T (a residual), else y = x W^T.
struct GemvTarget {
  const float* w;
  int64_t rows, ldw;
  float* y;
  int64_t ldy;
  bool accumulate;
};

// y (M, N) (+)= x (M, K) @ W (N, K)^T, on the pool's threads when the weights are large enough
// to pay for waking them. x row stride ldx.
void gemv(float* y, int64_t ldy, const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t M, int64_t N,
          int64_t K, bool accumulate);

// Several products of the same x in one pass (q, k and v; gate and up): the targets' rows are
// split over the threads as if their matrices were stacked, so the pool wakes once.
void gemv_multi(const GemvTarget* targets, int ntargets, const float* x, int64_t ldx, int64_t M, int64_t K);

// On the calling thread only: rows [j0, j1) of one target.
void gemv_rows(const GemvTarget& t, const float* x, int64_t ldx, int64_t M, int64_t K, int64_t j0, int64_t j1);

}  // namespace pg

namespace pg {

struct PagedAttention;  // patentgpt/paged_attention.h
enum class KvDType : int32_t;  // patentgpt/paged_attention.h
enum class QuantType : int32_t;  // patentgpt/quant.h

// ---- decode.cpp: a decoder layer's pieces for a few rows, each one parallel region ----
// Decoding runs some 15 small ops per layer; as separate calls each wakes the thread pool and
// (from JavaScript) allocates its output. These fuse them around the GEMVs, with spin barriers
// between phases instead of pool wake-ups. M rows (tokens), C = dim, H query heads, Hkv key/value
// heads of D, F = feed-forward width.

// h (M, C) = rmsnorm(x, norm_w); q (M, H, D), k, v (M, Hkv, D) = h @ Wq^T, Wk^T, Wv^T with RoPE
// (Hugging Face layout) at pos (M) on q and k; k and v also stored in the caches
// (num_blocks, block_size, Hkv, D) at slot_mapping (M; < 0 skips). h is scratch.
struct DecodeQkvArgs {
  float *q, *k, *v, *h;
  void *k_cache, *v_cache;  // of kv_dtype
  const float *x, *norm_w;
  float eps;
  const float *wq, *wk, *wv;
  const int32_t *pos, *slot_mapping;
  int64_t M, C, H, Hkv, D;
  float theta, pos_scale;
  KvDType kv_dtype{};  // the caches' element type (zero: f32)
  QuantType wtype{};   // wq, wk, wv (and decode_layer's wo): f32 (zero), or quantized rows (quant.h) behind the pointers
};
void decode_qkv(const DecodeQkvArgs& a);

// The SwiGLU feed-forward with its pre-norm and residual: x (M, C) += down(silu(gate(h)) * up(h)),
// h = rmsnorm(x, norm_w). Scratch h (M, C), g and u (M, F); wg, wu (F, C), wd (C, F).
struct DecodeMlpArgs {
  float *h, *g, *u;
  const float* norm_w;
  float eps;
  const float *wg, *wu, *wd;
  int64_t M, C, F;
  QuantType wtype{};  // wg, wu, wd: f32 (zero), or quantized rows (quant.h) behind the pointers
};
void decode_swiglu_mlp(float* x, const DecodeMlpArgs& a);

// A whole decoder layer with a SwiGLU feed-forward, in one parallel region: decode_qkv (on qkv.x
// = x), paged attention of q over the caches into attn.out (attn.q = qkv.q; the same caches),
// x += attn.out @ wo^T (wo (C, H * D)), then decode_swiglu_mlp on x.
void decode_layer(float* x, const DecodeQkvArgs& qkv, const PagedAttention& attn, const float* wo,
                  const DecodeMlpArgs& mlp);

// The language-model head of the last rows: logits (M, V) = rmsnorm(x, norm_w) @ W (V, C)^T.
// h (M, C) is scratch. W is f32, or quantized rows of type wtype (quant.h).
void decode_logits(float* logits, float* h, const float* x, const float* norm_w, float eps, const float* w, int64_t M,
                   int64_t C, int64_t V, QuantType wtype = QuantType{});

}  // namespace pg
