// The CUDA twins of the kernels in ops.h (native/cuda/<family>.cu), compiled when nvcc is found
// (PG_WITH_CUDA). Each has the signature of its CPU kernel, so a binding calls one or the other
// by the tensors' device; pointers are device pointers, checked for bounds by the bindings.
//
// Differences from the CPU kernels:
// - Launches go on the current stream (stream() below): the process-wide stream unless the calling
//   thread made another current (an engine's or trainer's own); kernels run in issue order on it,
//   and a copy to the host waits for them.
// - A failure throws cuda::Error naming the op and its sizes (the bindings turn it into a JS error
//   with a code, never an abort): a launch error, an out-of-memory scratch allocation, or an index
//   out of range (ids, targets and gather/scatter indices live on the device, so they are checked
//   by the kernel, which raises a flag the launcher reads back; the CPU bindings check them on the
//   host instead).
// - Scatter-adds (embedding backward, scatter_add) use atomics: the order of additions, so the
//   last bits, may differ from run to run. Everything else is deterministic.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "patentgpt/ops.h"

namespace pg::cuda {

// The 16-bit floating-point formats of the kernels that take them (attention, the AdamW step over
// 16-bit parameters, the loss-scale check): values travel as uint16_t bit patterns.
enum class Half16 { BF16, F16 };

struct Error : std::runtime_error {
  Error(const std::string& what, bool bad_argument = false) : std::runtime_error(what), bad_argument(bad_argument) {}
  bool bad_argument;  // an argument the caller got wrong (an index out of range), not a device failure
};

// The stream kernels and copies go on (a cudaStream_t): this thread's current stream, by default
// the process's stream (created on first use).
void* stream();
void* process_stream();
// Makes `s` this thread's current stream (null: the process stream again). The new stream first
// waits (on the device) for the work issued to the old one, so memory freed after it and reused
// on the new stream is safe with the stream-unaware caching allocator.
void set_current_stream(void* s);
// A stream of its own (an engine's or a trainer's), and its release: the process stream waits for
// its work, and it stops being current.
void* create_stream();
void destroy_stream(void* s);
// A second stream for collectives (NCCL), so gradient buckets reduce while backward runs on
// stream(); ordered against it only by stream_wait. Created on first use.
void* comm_stream();
// Makes `waiter` wait (on the device) for the work issued to `signaller` so far: an event recorded
// on one and waited on by the other. Throws Error naming `what` on failure.
void stream_wait(void* waiter, void* signaller, const char* what);
// Waits for everything issued so far; throws Error naming `what` on an asynchronous failure.
void synchronize(const char* what);
// Whether cuBLASLt is usable: an empty string, or why not (library missing, no device).
std::string cublaslt_status();
std::string cublaslt_version();  // "libcublasLt.so.13 (130000)" when loaded, else ""

void add_forward(float* out, const float* a, const float* b, int64_t n);
void axpy(float* y, const float* x, float alpha, int64_t n);
void triad(float* out, const float* a, const float* b, float alpha, int64_t n);
void scale_inplace(float* x, float alpha, int64_t n);
void fill(float* x, float value, int64_t n);
double sum(const float* x, int64_t n);
double sum_squares(const float* x, int64_t n);
void cast_f32_to_bf16(uint16_t* out, const float* x, int64_t n);
void cast_bf16_to_f32(float* out, const uint16_t* x, int64_t n);
void cast_f32_to_f16(uint16_t* out, const float* x, int64_t n);
void cast_f16_to_f32(float* out, const uint16_t* x, int64_t n);
void binary_forward(float* out, const float* a, const float* b, int64_t n, int64_t a_size, int64_t a_inner,
                    int64_t b_size, int64_t b_inner, BinaryOp op);
void binary_backward(float* da, float* db, const float* dout, const float* a, const float* b, int64_t n,
                     int64_t a_size, int64_t a_inner, int64_t b_size, int64_t b_inner, BinaryOp op);
void sum_broadcast(float* out, const float* x, int64_t n, int64_t size, int64_t inner);
void unary_forward(float* out, const float* x, int64_t n, UnaryOp op, float lo, float hi);
void unary_backward(float* dx, const float* dout, const float* x, const float* out, int64_t n, UnaryOp op,
                    float lo, float hi);
void where_forward(float* out, const int32_t* cond, const float* a, const float* b, int64_t n, int64_t a_size,
                   int64_t a_inner, int64_t b_size, int64_t b_inner);
void where_backward(float* da, float* db, const float* dout, const int32_t* cond, int64_t n);

void sum_dim_forward(float* out, const float* x, int64_t outer, int64_t D, int64_t inner, float scale);
void sum_dim_backward(float* dx, const float* dout, int64_t outer, int64_t D, int64_t inner, float scale);
void max_dim_forward(float* values, int32_t* indices, const float* x, int64_t outer, int64_t D, int64_t inner);
void gather_forward(float* out, const float* x, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                    int64_t inner);
void scatter_add(float* dst, const float* src, const int32_t* index, int64_t outer, int64_t D, int64_t K,
                 int64_t inner);
void softmax_forward(float* out, const float* x, int64_t N, int64_t C);
void softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C);
void log_softmax_forward(float* out, const float* x, int64_t N, int64_t C);
void log_softmax_backward(float* dx, const float* dout, const float* out, int64_t N, int64_t C);

// GEMM through cuBLASLt (f32 compute); throws Error when libcublasLt cannot be opened.
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
          int64_t stride_c, int64_t batch);
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb, int64_t stride_b, float beta, float* C,
               int64_t ldc, int64_t stride_c, int64_t batch);
void gemm_f16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
              int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb, int64_t stride_b, float beta, float* C,
              int64_t ldc, int64_t stride_c, int64_t batch);
// cuBLASLt's fused epilogues on a single (batch 1) GEMM: C = act(alpha op(A) op(B) + beta C + bias),
// bias (N) broadcast over rows; bias null for none.
enum class Epilogue { None, Relu, Gelu };
void gemm_epilogue(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias,
                   Epilogue act);

// Unlike the CPU kernels these take V: the ids are checked on the device. On an id out of range
// the call throws after the kernel ran: forward leaves that row zero, backward has added the rows
// of the valid ids (the CPU binding refuses before touching anything).
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t N, int64_t C, int64_t V);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t N, int64_t C, int64_t V);

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int64_t C, float eps);
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int64_t C);

void rope_forward(float* out, const float* x, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                  float pos_scale);
void rope_backward(float* dx, const float* dout, const int32_t* pos, int64_t T, int64_t H, int64_t D, float theta,
                   float pos_scale);

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up, int64_t n);

void cross_entropy_forward(float* loss, float* lse, const float* logits, const int32_t* targets, int64_t N,
                           int64_t V, int32_t ignore_index);
void cross_entropy_backward(float* dlogits, const float* dloss, const float* logits, const float* lse,
                            const int32_t* targets, int64_t N, int64_t V, int32_t ignore_index);
void logprob_forward(float* out, float* lse, const float* logits, const int32_t* ids, int64_t N, int64_t V);
void logprob_backward(float* dlogits, const float* dout, const float* logits, const float* lse, const int32_t* ids,
                      int64_t N, int64_t V);

void adamw_step(float* param, float* m, float* v, const float* grad, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, int64_t step, float grad_scale);
// Mixed precision: the same step on the f32 master weights `master` (updated in place), which also
// writes the 16-bit parameters the model computes with, param[i] = master[i] rounded to nearest even.
void adamw_step_master(Half16 dtype, float* master, uint16_t* param, float* m, float* v, const float* grad, int64_t n,
                       float lr, float beta1, float beta2, float eps, float weight_decay, int64_t step,
                       float grad_scale);

// fp16 loss scaling (host logic: cuda_loss_scale.h). out[i] = grad[i] * inv_scale in f32 (out may
// be grad in the f32 form), and *found_inf, a device int32, set to 1 when any grad[i] is inf or
// NaN. The flag is only raised here: clear it once per step, unscale every gradient tensor into it,
// then read it once (the step's one host sync).
void unscale_check(float* out, const float* grad, int64_t n, float inv_scale, int32_t* found_inf);
void unscale_check_16(Half16 dtype, float* out, const uint16_t* grad, int64_t n, float inv_scale, int32_t* found_inf);
void clear_found_inf(int32_t* found_inf);
bool read_found_inf(const int32_t* found_inf);

void dropout_forward(float* out, const float* x, int64_t n, double p, uint64_t seed, uint64_t offset);
void dropout_backward(float* dx, const float* dout, int64_t n, double p, uint64_t seed, uint64_t offset);

}  // namespace pg::cuda
