// GEMM on CUDA through cuBLASLt, opened at run time (cuda_host.h), called through our own
// declarations (cublaslt_api.h). Row-major C = alpha op(A) op(B) + beta C is cuBLASLt's
// column-major C^T = op(B)^T op(A)^T (the mapping is cuda_host::plan_lt_gemm, tested on CPU).
// f32 inputs compute in f32 (CUBLAS_COMPUTE_32F, no TF32: results match the CPU kernel's
// precision); bf16 / f16 inputs accumulate in f32 and write f32. One handle and a 32 MiB
// workspace per process, on the process stream.
#include <mutex>

#include "common.cuh"
#include "cublaslt_api.h"

namespace pg::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct LtState {
  std::mutex mutex;
  bool tried = false;
  lt::Handle handle = nullptr;
  void* workspace = nullptr;
  std::string error;
};

LtState& state() {
  static auto* s = new LtState();  // never destroyed: GEMMs may run during exit
  return *s;
}

template <typename Fn>
Fn fn(void* sym) {
  return reinterpret_cast<Fn>(sym);
}

// The process's handle and workspace, made on first use; throws Error saying why cuBLASLt is unusable.
LtState& ready(const std::string& what) {
  LtState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.tried) {
    s.tried = true;
    const cuda_host::CublasLtLibrary& lib = cuda_host::cublaslt();
    if (!lib.handle) {
      s.error = lib.error;
    } else if (fn<lt::CreateFn>(lib.sym.create)(&s.handle) != lt::kSuccess) {
      s.handle = nullptr;
      s.error = "cublasLtCreate failed (is a CUDA device present and its driver recent enough for " + lib.path + "?)";
    } else {
      std::string err;
      s.workspace = cuda_alloc(kWorkspaceBytes, err);
      if (!s.workspace) s.error = "cuBLASLt workspace of " + std::to_string(kWorkspaceBytes) + " bytes: " + err;
    }
  }
  if (!s.error.empty()) throw Error(what + ": " + s.error);
  return s;
}

// C[b] (M, N), row stride ldc = beta * C[b] (0 when beta == 0, whatever C held): the K == 0 case.
__global__ void __launch_bounds__(kElementwiseThreads) scale_c_kernel(float* C, int64_t M, int64_t N, int64_t ldc,
                                                                      int64_t stride_c, int64_t batch, float beta) {
  const int64_t total = batch * M * N;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / (M * N), r = (i / N) % M, c = i % N;
    float* p = C + b * stride_c + r * ldc + c;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

// RAII for the descriptors of one call.
struct Descs {
  const cuda_host::CublasLtSymbols& sym;
  lt::MatmulDesc desc = nullptr;
  lt::Layout a = nullptr, b = nullptr, c = nullptr;
  lt::Preference pref = nullptr;
  explicit Descs(const cuda_host::CublasLtSymbols& s) : sym(s) {}
  ~Descs() {
    if (pref) fn<lt::PrefDestroyFn>(sym.pref_destroy)(pref);
    if (c) fn<lt::LayoutDestroyFn>(sym.layout_destroy)(c);
    if (b) fn<lt::LayoutDestroyFn>(sym.layout_destroy)(b);
    if (a) fn<lt::LayoutDestroyFn>(sym.layout_destroy)(a);
    if (desc) fn<lt::DescDestroyFn>(sym.desc_destroy)(desc);
  }
};

void ok(lt::Status status, const char* call, const std::string& what) {
  if (status != lt::kSuccess) throw Error(what + ": " + call + " failed with cublasStatus " + std::to_string(status));
}

lt::Layout layout(const cuda_host::CublasLtSymbols& sym, cudaDataType_t type, const cuda_host::LtMatrix& m,
                  int64_t batch, const std::string& what) {
  lt::Layout l = nullptr;
  ok(fn<lt::LayoutCreateFn>(sym.layout_create)(&l, type, static_cast<uint64_t>(m.rows), static_cast<uint64_t>(m.cols),
                                               m.ld),
     "cublasLtMatrixLayoutCreate", what);
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    const int64_t stride = m.stride;
    ok(fn<lt::LayoutSetFn>(sym.layout_set)(l, lt::kLayoutBatchCount, &count, sizeof count), "batch count", what);
    ok(fn<lt::LayoutSetFn>(sym.layout_set)(l, lt::kLayoutStridedBatchOffset, &stride, sizeof stride), "batch stride",
       what);
  }
  return l;
}

// One planned GEMM (plan.calls calls of plan.batch products); ab_type the type of A and B.
void run(const char* name, cudaDataType_t ab_type, size_t ab_bytes, bool trans_a, bool trans_b, int64_t M, int64_t N,
         int64_t K, float alpha, const void* A, int64_t lda, int64_t stride_a, const void* B, int64_t ldb,
         int64_t stride_b, float beta, float* C, int64_t ldc, int64_t stride_c, int64_t batch, const float* bias,
         Epilogue act) {
  const std::string what = describe(name, {{"M", M}, {"N", N}, {"K", K}, {"batch", batch}});
  const cuda_host::LtGemmPlan plan =
      cuda_host::plan_lt_gemm(trans_a, trans_b, M, N, K, lda, stride_a, ldb, stride_b, ldc, stride_c, batch);
  if (plan.kind == cuda_host::LtGemmPlan::Nothing) return;
  if (plan.kind == cuda_host::LtGemmPlan::ScaleC) {  // K == 0: no product, C = beta C
    if (bias) throw Error(what + ": a bias epilogue needs K > 0", true);
    const int64_t batches = stride_c == 0 ? 1 : batch;
    scale_c_kernel<<<blocks_for(batches * M * N), kElementwiseThreads, 0, st()>>>(C, M, N, ldc, stride_c, batches, beta);
    check_launch(what);
    return;
  }
  LtState& s = ready(what);
  const cuda_host::CublasLtSymbols& sym = cuda_host::cublaslt().sym;
  Descs d(sym);
  ok(fn<lt::DescCreateFn>(sym.desc_create)(&d.desc, lt::kCompute32F, CUDA_R_32F), "cublasLtMatmulDescCreate", what);
  const int32_t ta = plan.trans_a ? lt::kOpT : lt::kOpN, tb = plan.trans_b ? lt::kOpT : lt::kOpN;
  ok(fn<lt::DescSetFn>(sym.desc_set)(d.desc, lt::kDescTransA, &ta, sizeof ta), "TRANSA", what);
  ok(fn<lt::DescSetFn>(sym.desc_set)(d.desc, lt::kDescTransB, &tb, sizeof tb), "TRANSB", what);
  if (bias || act != Epilogue::None) {
    uint32_t epi = lt::kEpilogueDefault;
    if (act == Epilogue::Relu) epi = bias ? lt::kEpilogueReluBias : lt::kEpilogueRelu;
    else if (act == Epilogue::Gelu) epi = bias ? lt::kEpilogueGeluBias : lt::kEpilogueGelu;
    else if (bias) epi = lt::kEpilogueBias;
    ok(fn<lt::DescSetFn>(sym.desc_set)(d.desc, lt::kDescEpilogue, &epi, sizeof epi), "EPILOGUE", what);
    if (bias) ok(fn<lt::DescSetFn>(sym.desc_set)(d.desc, lt::kDescBiasPointer, &bias, sizeof bias), "BIAS_POINTER", what);
  }
  d.a = layout(sym, ab_type, plan.a, plan.batch, what);
  d.b = layout(sym, ab_type, plan.b, plan.batch, what);
  d.c = layout(sym, CUDA_R_32F, plan.c, plan.batch, what);
  ok(fn<lt::PrefCreateFn>(sym.pref_create)(&d.pref), "cublasLtMatmulPreferenceCreate", what);
  const uint64_t ws = kWorkspaceBytes;
  ok(fn<lt::PrefSetFn>(sym.pref_set)(d.pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof ws), "workspace preference", what);
  // Tensor views start at any element: tell the heuristic how aligned these pointers (and every
  // batch's, via the strides) really are, so it never picks a kernel that assumes more.
  auto align = [&](const void* p, int64_t stride, size_t elem) {
    uint32_t a = cuda_host::pointer_alignment(p);
    if (plan.batch > 1 || plan.calls > 1) {
      const uint32_t sa = cuda_host::pointer_alignment(reinterpret_cast<const void*>(static_cast<uintptr_t>(stride * elem)));
      if (stride != 0 && sa < a) a = sa;
    }
    return a;
  };
  const uint32_t al_a = align(B, stride_b, ab_bytes), al_b = align(A, stride_a, ab_bytes), al_c = align(C, stride_c, 4);
  ok(fn<lt::PrefSetFn>(sym.pref_set)(d.pref, lt::kPrefMinAlignA, &al_a, sizeof al_a), "alignment A", what);
  ok(fn<lt::PrefSetFn>(sym.pref_set)(d.pref, lt::kPrefMinAlignB, &al_b, sizeof al_b), "alignment B", what);
  ok(fn<lt::PrefSetFn>(sym.pref_set)(d.pref, lt::kPrefMinAlignC, &al_c, sizeof al_c), "alignment C", what);
  ok(fn<lt::PrefSetFn>(sym.pref_set)(d.pref, lt::kPrefMinAlignD, &al_c, sizeof al_c), "alignment D", what);
  lt::HeuristicResult result{};
  int found = 0;
  ok(fn<lt::HeuristicFn>(sym.heuristic)(s.handle, d.desc, d.a, d.b, d.c, d.c, d.pref, 1, &result, &found),
     "cublasLtMatmulAlgoGetHeuristic", what);
  if (found == 0) throw Error(what + ": cuBLASLt has no algorithm for these shapes, types and alignments");
  for (int64_t call = 0; call < plan.calls; ++call) {
    const float beta_call = call == 0 ? beta : 1.0f;  // strideC 0: later batches accumulate
    const char* a_ptr = static_cast<const char*>(B) + call * stride_b * static_cast<int64_t>(ab_bytes);
    const char* b_ptr = static_cast<const char*>(A) + call * stride_a * static_cast<int64_t>(ab_bytes);
    ok(fn<lt::MatmulFn>(sym.matmul)(s.handle, d.desc, &alpha, a_ptr, d.a, b_ptr, d.b, &beta_call, C, d.c, C, d.c,
                                    &result.algo, s.workspace, kWorkspaceBytes, st()),
       "cublasLtMatmul", what);
  }
  check_launch(what);
}

}  // namespace

std::string cublaslt_status() {
  try {
    ready("cuBLASLt");
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::string cublaslt_version() {
  const cuda_host::CublasLtLibrary& lib = cuda_host::cublaslt();
  if (!lib.handle) return "";
  return lib.path + " (" + std::to_string(fn<lt::GetVersionFn>(lib.sym.get_version)()) + ")";
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C, int64_t ldc,
          int64_t stride_c, int64_t batch) {
  run("gemm", CUDA_R_32F, 4, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
      stride_c, batch, nullptr, Epilogue::None);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb, int64_t stride_b, float beta, float* C,
               int64_t ldc, int64_t stride_c, int64_t batch) {
  run("gemmBf16", CUDA_R_16BF, 2, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
      stride_c, batch, nullptr, Epilogue::None);
}

void gemm_f16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
              int64_t lda, int64_t stride_a, const uint16_t* B, int64_t ldb, int64_t stride_b, float beta, float* C,
              int64_t ldc, int64_t stride_c, int64_t batch) {
  run("gemmF16", CUDA_R_16F, 2, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
      stride_c, batch, nullptr, Epilogue::None);
}

void gemm_epilogue(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias,
                   Epilogue act) {
  run("gemm epilogue", CUDA_R_32F, 4, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, bias,
      act);
}

}  // namespace pg::cuda
