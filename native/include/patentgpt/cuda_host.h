// Host-side logic of the CUDA op families other than attention, paged attention and MoE (those
// plan in cuda_plan.h): plain C++ compiled into every build (with or without nvcc), so it is
// tested on machines without a GPU (native/test/test_cuda_host.cpp):
//   - launch shapes of the elementwise and row kernels (native/cuda/*.cu launch what these say);
//   - the mapping of our row-major GEMM onto cuBLASLt's column-major matmul;
//   - the loader that opens libcublasLt at run time (dlopen), so the binary loads without it and
//     says why GEMM on CUDA is unavailable.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace pg::cuda_host {

// ---- launch shapes ----
inline constexpr int kElementwiseThreads = 256;  // __launch_bounds__ of the elementwise kernels
inline constexpr int kRowThreads = 256;          // one block per row: rmsnorm, softmax, cross-entropy
inline constexpr int64_t kMaxGridX = 2147483647;
// Blocks of `threads` for a grid-stride loop over n items: enough to cover n, at most
// `max_blocks` (a few waves of the device; the loop does the rest); 0 when n == 0.
int64_t grid_1d(int64_t n, int threads, int64_t max_blocks);
// Row chunks for a two-pass column reduction (rmsnorm's dw): rows split into at most
// `max_chunks` chunks of whole rows, so partial sums (chunks, C) are added in a fixed order.
struct RowChunks {
  int64_t chunks, rows_per_chunk;
};
RowChunks row_chunks(int64_t N, int64_t max_chunks);

// ---- GEMM on cuBLASLt ----
// Our gemm (ops.h): C[b] (M, N) = alpha op(A[b]) op(B[b]) + beta C[b], every matrix row-major with
// row stride ld. cuBLASLt is column-major: a row-major (r, c) matrix with stride ld is the
// column-major (c, r) matrix with the same ld, so C^T = op(B)^T op(A)^T is computed as
// D_lt (N, M) = op_lt(B) op_lt(A): cuBLASLt's "A" is our B and its "B" is our A.
struct LtMatrix {
  int64_t rows, cols, ld, stride;  // column-major layout given to cublasLtMatrixLayoutCreate
};
struct LtGemmPlan {
  enum Kind { Nothing, ScaleC, Matmul } kind;  // M, N or batch zero; K zero (C = beta C); a matmul
  bool trans_a, trans_b;                       // cuBLASLt's TRANSA (our transB), TRANSB (our transA)
  int64_t m, n, k;                             // cuBLASLt's sizes: m = N, n = M
  LtMatrix a, b, c;                            // cuBLASLt's A (our B), B (our A), C = D (our C)
  int64_t batch;                               // batch count of each call
  int64_t calls;                               // 1, or `batch` single calls when strideC == 0
                                               // (every batch accumulates into one C: beta 1 after the first)
};
LtGemmPlan plan_lt_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda,
                        int64_t stride_a, int64_t ldb, int64_t stride_b, int64_t ldc, int64_t stride_c,
                        int64_t batch);
// The largest power of two <= 256 dividing the address (cuBLASLt's MIN_ALIGNMENT preferences).
uint32_t pointer_alignment(const void* p);

// ---- libcublasLt, opened at run time ----
// The C entry points we call, resolved by dlsym (their types: native/cuda/cublaslt_api.h).
struct CublasLtSymbols {
  void* create = nullptr;              // cublasLtCreate
  void* destroy = nullptr;             // cublasLtDestroy
  void* get_version = nullptr;         // cublasLtGetVersion
  void* desc_create = nullptr;         // cublasLtMatmulDescCreate
  void* desc_destroy = nullptr;        // cublasLtMatmulDescDestroy
  void* desc_set = nullptr;            // cublasLtMatmulDescSetAttribute
  void* layout_create = nullptr;       // cublasLtMatrixLayoutCreate
  void* layout_destroy = nullptr;      // cublasLtMatrixLayoutDestroy
  void* layout_set = nullptr;          // cublasLtMatrixLayoutSetAttribute
  void* pref_create = nullptr;         // cublasLtMatmulPreferenceCreate
  void* pref_destroy = nullptr;        // cublasLtMatmulPreferenceDestroy
  void* pref_set = nullptr;            // cublasLtMatmulPreferenceSetAttribute
  void* heuristic = nullptr;           // cublasLtMatmulAlgoGetHeuristic
  void* matmul = nullptr;              // cublasLtMatmul
};
struct CublasLtLibrary {
  void* handle = nullptr;  // dlopen handle; null when not loaded
  std::string path;        // the name that opened
  std::string error;       // why it did not load (empty when it did)
  CublasLtSymbols sym;
};
// The library names tried, newest first: libcublasLt.so.13, .so.12, .so (PATENTGPT_CUBLASLT, when
// set, is tried first: the full path of a libcublasLt from a Python wheel, say).
std::vector<std::string> cublaslt_candidates();
// Tries each name in order; on failure `error` lists every name with dlerror's reason and says
// what to install. A library missing one of the symbols is refused (and closed).
CublasLtLibrary open_cublaslt(const std::vector<std::string>& names);
// The process's library, opened on first use (thread-safe); never closed.
const CublasLtLibrary& cublaslt();

}  // namespace pg::cuda_host
