// The kernels of patentgpt: plain functions over pointers and sizes, no Node headers.
//
// Conventions (as in llm.c):
// - Tensors are contiguous and row-major; a comment gives each buffer's shape.
// - Argument order: outputs, saved statistics, inputs, sizes, hyper-parameters.
// - Forward saves exactly what backward needs.
// - Activation gradients are written (=); parameter gradients accumulate (+=).
// - Kernels never allocate and never throw: the bindings validate every argument first.
// - Multi-threading goes through the persistent pool in runtime.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pg {

// ---- elementwise.cpp: residual add, in-place accumulate, fill, scale, casts, reductions ----
void add_forward(float* out, const float* a, const float* b, int64_t n);      // out = a + b
void axpy(float* y, const float* x, float alpha, int64_t n);                   // y += alpha * x
// out = a + alpha * b: STREAM's triad (three arrays), what bandwidth bounds are measured with.
void triad(float* out, const float* a, const float* b, float alpha, int64_t n);
void scale_inplace(float* x, float alpha, int64_t n);                          // x *= alpha
void fill(float* x, float value, int64_t n);
double sum(const float* x, int64_t n);                                          // accumulated in f64
double sum_squares(const float* x, int64_t n);                                  // for global grad norm
void cast_f32_to_bf16(uint16_t* out, const float* x, int64_t n);               // round to nearest even
void cast_bf16_to_f32(float* out, const uint16_t* x, int64_t n);
void cast_f32_to_f16(uint16_t* out, const float* x, int64_t n);                // IEEE half, RNE
void cast_f16_to_f32(float* out, const uint16_t* x, int64_t n);

// ---- elementwise.cpp (continued): pointwise math, one broadcast pattern per operand ----
// An operand of a binary op reads, for output element i of n, x[(i / inner) % size]: the
// broadcasting of an operand whose shape is one contiguous block of the output's dimensions.
// size == n, inner == 1: same shape; size == 1: a scalar; inner == 1: a trailing shape (bias
// (C) against (N, C)); size = N, inner = C: a column (N, 1) against (N, C). size, inner >= 1.
enum class BinaryOp : int32_t { Add = 0, Sub = 1, Mul = 2, Div = 3, Minimum = 4, Maximum = 5 };
// out (n) = a op b.
void binary_forward(float* out, const float* a, const float* b, int64_t n, int64_t a_size, int64_t a_inner,
                    int64_t b_size, int64_t b_inner, BinaryOp op);
// da, db (n): each operand's gradient at the output's shape, written (=); null when not wanted.
// A broadcast operand's gradient is then reduced to its own shape by sum_broadcast. Ties of
// minimum/maximum split the gradient in halves (as torch does).
void binary_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n,
                     int64_t a_size, int64_t a_inner, int64_t b_size, int64_t b_inner, BinaryOp op);
// out (size) = sum of x (n) over the output elements that read each operand element (the
// adjoint of broadcasting): x viewed as (n / (size * inner), size, inner) summed over dims 0, 2.
void sum_broadcast(float* out, const float* x, int64_t n, int64_t size, int64_t inner);
enum class UnaryOp : int32_t { Neg = 0, Exp = 1, Log = 2, Sigmoid = 3, LogSigmoid = 4, Clamp = 5 };
// out (n) = op(x); lo, hi are clamp's bounds (ignored by the others).
void unary_forward(float* out, const float* x, int64_t n, UnaryOp op, float lo, float hi);
// dx (n) = dout * op'(x), written; reads x or out (the forward's result) as the op needs; dx may
// alias dout. clamp passes the gradient where lo <= x <= hi.
void unary_backward(float* dx, const float* dout, const float* x, const float* out, int64_t n, UnaryOp op,
                    float lo, float hi);
// out (n) = cond[i] != 0 ? a : b, a and b broadcast as binary_forward's operands.
void where_forward(float* out, const int32_t* cond, const float* a, const float* b, int64_t n, int64_t a_size,
                   int64_t a_inner, int64_t b_size, int64_t b_inner);
// da (n) = cond ? dout : 0, db (n) = cond ? 0 : dout, written; null when not wanted.
void where_backward(float* da, float* db, const float* dout, const int32_t* cond, int64_t n);

// ---- reduce.cpp: reductions over one dimension, softmax, gather/scatter along a dimension ----
// x is viewed as (outer, D, inner): D the reduced (or indexed) dimension, outer the product of
// the dimensions before it, inner of those after it. Results are (outer, inner).
// out (outer, inner) = scale * sum over D (f64 accumulation); scale 1 / D gives the mean.
void sum_dim_forward(float* out, const float* x, int64_t outer, int64_t D, int64_t inner, float scale);
// dx (outer, D, inner) = scale * dout (outer, inner) broadcast over D, written.
void sum_dim_backward(float* dx, const float* dout, int64_t outer, int64_t D, int64_t inner, float scale);
// values, indices (outer, inner): the maximum over D and the first index holding it (NaN wins,
// as in torch). D >= 1. Backward is scatter_add of dout at indices (K = 1) into zeroed dx.
void max_dim_forward(float* values, int32_t* indices, const float* x, int64_t outer, int64_t D, int64_t inner);
// out (outer, K, inner) = x (outer, D, inner) at index (outer, K, inner) along D; indices are
// checked in [0, D) by the caller.
void gather_forward(float* out, const float* x, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                    int64_t inner);
// dst (outer, D, inner) += src (outer, K, inner) scattered at index along D (accumulates, like
// a parameter gradient): scatter_add's forward and gather's backward. Deterministic: each
// thread owns a slice of (outer, inner) and adds in k order.
void scatter_add(float* dst, const float* src, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                 int64_t inner);
// Over the last dimension of x (N, C): out (N, C) = softmax(x) / log_softmax(x), f32 with the
// row maximum subtracted. Backward reads the forward's out; dx (N, C) written, may alias dout.
void softmax_forward(float* out, const float* x, int64_t N, int64_t C);
void softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C);
void log_softmax_forward(float* out, const float* x, int64_t N, int64_t C);
void log_softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C);

// ---- gemm.cpp: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], f32 accumulation ----
// op(A) is (M, K), op(B) is (K, N), C is (M, N); lda/ldb/ldc are row strides of the stored
// matrices; batch strides of 0 broadcast one matrix over the batch. beta = 0 ignores C's contents.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
          const float* A, int64_t lda, int64_t stride_a,
          const float* B, int64_t ldb, int64_t stride_b, float beta,
          float* C, int64_t ldc, int64_t stride_c, int64_t batch);
// The same with bf16 inputs (converted while packing) and f32 output.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const uint16_t* A, int64_t lda, int64_t stride_a,
               const uint16_t* B, int64_t ldb, int64_t stride_b, float beta,
               float* C, int64_t ldc, int64_t stride_c, int64_t batch);

// The dispatched microkernel's name, with its blocking {MR, NR, MC, KC, NC} written to `blocking`.
const char* gemm_config(int64_t blocking[5]);
// FP32 GFLOP/s of a throughput-bound FMA loop on `threads` threads (0: all) for about `seconds`.
double gemm_peak_gflops(int threads, double seconds);

// ---- embedding.cpp ----
// out (N, C) = table (V, C) rows at ids (N); ids are checked in range by the caller.
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C);
// dtable (V, C) += scatter of dout (N, C) at ids.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t C);

// ---- rmsnorm.cpp ----
// out (N, C) = x / rms(x) * w; rstd (N) saved for backward.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps);
// dx (N, C) written; dw (C) accumulated.
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                      const float* rstd, int64_t N, int64_t C);

// ---- rope.cpp: rotary embedding, Hugging Face LLaMA layout (rotate_half over the two halves) ----
// x, out (T, H, D) with D even; pos (T) token positions; the angle for pair i is
// (pos / pos_scale) * theta^(-2i/D): pos_scale > 1 is linear position interpolation, a larger
// theta is base-frequency scaling. out may alias x.
void rope_forward(float* out, const float* x, const int32_t* pos, int64_t T, int64_t H, int64_t D,
                  float theta, float pos_scale);
// dx = rotation of dout by the opposite angle; dx may alias dout.
void rope_backward(float* dx, const float* dout, const int32_t* pos, int64_t T, int64_t H, int64_t D,
                   float theta, float pos_scale);

// ---- swiglu.cpp: out = silu(gate) * up, elementwise over n ----
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);

// ---- cross_entropy.cpp: softmax cross-entropy and log-prob gather over logits rows ----
// logits (N, V), targets (N); loss (N) = lse - logits[target] (0 where target == ignore_index);
// lse (N) saved.
void cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets,
                           int64_t N, int64_t V, int32_t ignore_index);
// dlogits (N, V) = dloss[n] * (softmax - onehot(target)); zero rows where ignored. dlogits may
// alias logits, so a vocabulary-sized buffer is never needed twice.
void cross_entropy_backward(float* dlogits, const float* dloss, const float* logits, const float* lse,
                            const int32_t* targets, int64_t N, int64_t V, int32_t ignore_index);
// out (N) = logits[n, ids[n]] - lse[n]; lse (N) saved.
void logprob_forward(float* out, float* lse, const float* logits, const int32_t* ids, int64_t N, int64_t V);
// dlogits (N, V) = dout[n] * (onehot(id) - softmax); may alias logits.
void logprob_backward(float* dlogits, const float* dout, const float* logits, const float* lse,
                      const int32_t* ids, int64_t N, int64_t V);

// ---- attention.cpp: fused causal attention, FlashAttention-2 style ----
// Packed variable-length sequences: q (T, H, D), k and v (T, Hkv, D), H % Hkv == 0 (grouped-query),
// cu_seqlens (nseq + 1) cumulative lengths with cu_seqlens[nseq] == T; a token attends only
// within its own sequence. out (T, H, D); lse (H, T) saved for backward. Memory is linear in T.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t nseq, int64_t T, int64_t H, int64_t Hkv,
                       int64_t D, float scale, bool causal);
// dq (T, H, D), dk and dv (T, Hkv, D) written; delta (H, T) is scratch. Recomputes the
// probabilities from lse, tile by tile.
void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout,
                        const float* out, const float* lse, const float* q, const float* k,
                        const float* v, const int32_t* cu_seqlens, int64_t nseq, int64_t T,
                        int64_t H, int64_t Hkv, int64_t D, float scale, bool causal);

// ---- adamw.cpp: fused AdamW with decoupled weight decay ----
// step is 1-based (bias correction); grad is multiplied by grad_scale first (clipping, loss scale).
void adamw_step(float* param, float* m, float* v, const float* grad, int64_t n, float lr,
                float beta1, float beta2, float eps, float weight_decay, int64_t step, float grad_scale);

// ---- moe.cpp: dropless sparse mixture of experts (MegaBlocks), CPU ----
// A slot is one (token n, choice j) pair, numbered s = n * k + j; M = N * k slots. The expert
// order lists the slots grouped by expert (stable); order[p] is the slot at position p, slot_pos
// its inverse, offsets (E + 1) where each expert's rows begin (offsets[E] = M).
// indices, weights (N, k): per row of logits (N, E), the k largest in descending order (ties to
// the lower index) and their weights: softmax over the k selected logits when normalize
// (Mixtral's renormalisation), else the softmax over all E at them. 1 <= k <= E.
void moe_router_forward(int32_t* indices, float* weights, const float* logits, int64_t N, int64_t E, int64_t k,
                        bool normalize);
// dlogits (N, E) written from dweights (N, k).
void moe_router_backward(float* dlogits, const float* dweights, const float* weights, const int32_t* indices,
                         const float* logits, int64_t N, int64_t E, int64_t k, bool normalize);
// order, slot_pos (M), offsets (E + 1) from indices (M) (each checked in [0, E) by the caller).
void moe_dispatch(int32_t* order, int32_t* slot_pos, int32_t* offsets, const int32_t* indices, int64_t M,
                  int64_t E);
// xs (M, C) = x (N, C) at row order[p] / k: the tokens gathered into expert order.
void moe_permute_forward(float* xs, const float* x, const int32_t* order, int64_t M, int64_t C, int64_t k);
// dx (N, C) = sum over j of dxs[slot_pos[n * k + j]], written (the scatter-add, as a gather).
void moe_permute_backward(float* dx, const float* dxs, const int32_t* slot_pos, int64_t N, int64_t C, int64_t k);
// y (M, O): rows offsets[e]..offsets[e+1] of xs (M, I) times W[e]^T, w (E, O, I); one packed
// GEMM per non-empty expert group.
void moe_grouped_gemm_forward(float* y, const float* xs, const float* w, const int32_t* offsets, int64_t E,
                              int64_t O, int64_t I);
// dxs (M, I) written, dw (E, O, I) accumulated; either may be null.
void moe_grouped_gemm_backward(float* dxs, float* dw, const float* dy, const float* xs, const float* w,
                               const int32_t* offsets, int64_t E, int64_t O, int64_t I);
// out (N, C) = sum over j of weights[n, j] * y[slot_pos[n * k + j]], y (M, C).
void moe_combine_forward(float* out, const float* y, const float* weights, const int32_t* slot_pos, int64_t N,
                         int64_t C, int64_t k);
// dy (M, C) and dweights (N, k) written (slot_pos a permutation: every row of dy is written).
void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const float* weights,
                          const int32_t* slot_pos, int64_t N, int64_t C, int64_t k);

// ---- dropout.cpp: inverted dropout with a counter-based mask (nothing saved for backward) ----
// out (n) = x / (1 - p) where kept, 0 where dropped; element i is dropped when the top 24 bits of
// output (offset + i) of SplitMix64 seeded with `seed`, read as u in [0, 1), fall below p.
// Thread-independent; out may alias x. 0 <= p < 1.
void dropout_forward(float* out, const float* x, int64_t n, double p, uint64_t seed, uint64_t offset);
// dx (n) = dout through the same mask and scale (same seed and offset), written; dx may alias dout.
void dropout_backward(float* dx, const float* dout, int64_t n, double p, uint64_t seed, uint64_t offset);

}  // namespace pg
