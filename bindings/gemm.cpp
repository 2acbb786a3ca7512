// Bindings of native/cpu/gemm.cpp: gemm and gemmBf16, plus the blocking in use and a measured
// FP32 peak for benchmarks.
#include "args.h"
#include "cuda_slot.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// Checked a + b.
int64_t Add(const Args& a, int64_t x, int64_t y) {
  if (y > std::numeric_limits<int64_t>::max() - x) a.Fail("size overflow");
  return x + y;
}

// Elements spanned by `batch` matrices of rows x cols with row stride ld and batch stride
// `stride` (0 when nothing is read). Requires ld >= cols.
int64_t Extent(const Args& a, const char* name, int64_t rows, int64_t cols, int64_t ld, int64_t stride,
               int64_t batch) {
  if (ld < cols)
    a.Fail(std::string(name) + ": leading dimension " + std::to_string(ld) + " is less than its row width " +
           std::to_string(cols));
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  const int64_t one = Add(a, a.Mul(rows - 1, ld), cols);
  return Add(a, a.Mul(batch - 1, stride), one);
}

// gemm(transA, transB, M, N, K, alpha, A, aOff, lda, strideA, B, bOff, ldb, strideB,
//      beta, C, cOff, ldc, strideC, batch)
template <typename T>
Napi::Value Gemm(const Napi::CallbackInfo& info, const Args& a) {
  const bool ta = a.Bool(0, "transA"), tb = a.Bool(1, "transB");
  const int64_t M = a.Size(2, "M"), N = a.Size(3, "N"), K = a.Size(4, "K");
  const double alpha = a.Num(5, "alpha"), beta = a.Num(14, "beta");
  const int64_t lda = a.Size(8, "lda"), sa = a.Size(9, "strideA");
  const int64_t ldb = a.Size(12, "ldb"), sb = a.Size(13, "strideB");
  const int64_t ldc = a.Size(17, "ldc"), sc = a.Size(18, "strideC");
  const int64_t batch = a.Size(19, "batch");
  // A is stored (M, K), or (K, M) when transposed; B (K, N) or (N, K); C (M, N).
  const int64_t na = Extent(a, "A", ta ? K : M, ta ? M : K, lda, sa, batch);
  const int64_t nb = Extent(a, "B", tb ? N : K, tb ? K : N, ldb, sb, batch);
  const int64_t nc = Extent(a, "C", M, N, ldc, sc, batch);
  if (sc != 0 && batch > 1 && M > 0 && N > 0 && sc < (M - 1) * ldc + N)
    a.Fail("strideC " + std::to_string(sc) + " makes the batch's C matrices overlap (0 accumulates into one C)");
  const T* A = a.Ptr<T>(6, "A", na);
  const T* B = a.Ptr<T>(10, "B", nb);
  float* C = a.Ptr<float>(15, "C", nc);
  // C is written while A and B are still being read: they must not share memory.
  auto overlaps = [&](const void* p, int64_t bytes) {
    const char* c0 = reinterpret_cast<const char*>(C);
    const char* p0 = static_cast<const char*>(p);
    return bytes > 0 && nc > 0 && p0 < c0 + nc * 4 && c0 < p0 + bytes;
  };
  if (overlaps(A, na * static_cast<int64_t>(sizeof(T))) || overlaps(B, nb * static_cast<int64_t>(sizeof(T))))
    a.Fail("C overlaps A or B");
  if constexpr (sizeof(T) == 2)
    PG_ON(a, gemm_bf16)(ta, tb, M, N, K, static_cast<float>(alpha), A, lda, sa, B, ldb, sb, static_cast<float>(beta), C,
                  ldc, sc, batch);
  else
    PG_ON(a, gemm)(ta, tb, M, N, K, static_cast<float>(alpha), A, lda, sa, B, ldb, sb, static_cast<float>(beta), C, ldc,
             sc, batch);
  return info.Env().Undefined();
}

// gemmConfig() -> { isa, mr, nr, mc, kc, nc } at the current SIMD level.
Napi::Value GemmConfig(const Napi::CallbackInfo& info, const Args&) {
  int64_t blk[5];
  const char* isa = pg::gemm_config(blk);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("isa", isa);
  const char* names[5] = {"mr", "nr", "mc", "kc", "nc"};
  for (int i = 0; i < 5; ++i) out.Set(names[i], static_cast<double>(blk[i]));
  return out;
}

// gemmPeakGflops(threads, seconds) -> FP32 GFLOP/s of a throughput-bound FMA loop on `threads`
// threads (0: all), at the current SIMD level.
Napi::Value GemmPeakGflops(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t threads = a.Size(0, "threads");
  const double seconds = a.Num(1, "seconds");
  if (threads > 1024) a.Fail("threads must be at most 1024");
  if (!(seconds > 0 && seconds <= 10)) a.Fail("seconds must be in (0, 10]");
  return Napi::Number::New(info.Env(), pg::gemm_peak_gflops(static_cast<int>(threads), seconds));
}

// cublasLtStatus() -> whether GEMM on CUDA can run: cuBLASLt is opened at run time (native/cuda/gemm.cu),
// so the library that opened (with its version), or why none did.
Napi::Value CublasLtStatus(const Napi::CallbackInfo& info, const Args&) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  const std::string error = pg::cuda::cublaslt_status(), library = pg::cuda::cublaslt_version();
  out.Set("compiled", true);
#else
  const std::string error = "this binary was built without CUDA", library;
  out.Set("compiled", false);
#endif
  out.Set("library", library.empty() ? Napi::Value(env.Null()) : Napi::String::New(env, library));
  out.Set("error", error.empty() ? Napi::Value(env.Null()) : Napi::String::New(env, error));
  return out;
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "gemm", "gemm",
     "transA: boolean, transB: boolean, M: size, N: size, K: size, alpha: number, A: f32, lda: size, strideA: size, B: f32, ldb: size, strideB: size, beta: number, C: f32, ldc: size, strideC: size, batch: size",
     "void", /* cpu */ Gemm<float>, /* cuda */ PG_CUDA(Gemm<float>)},
    {DeclKind::Function, "gemmBf16", "gemmBf16",
     "transA: boolean, transB: boolean, M: size, N: size, K: size, alpha: number, A: bf16, lda: size, strideA: size, B: bf16, ldb: size, strideB: size, beta: number, C: f32, ldc: size, strideC: size, batch: size",
     "void", /* cpu */ Gemm<uint16_t>, /* cuda */ PG_CUDA(Gemm<uint16_t>)},
    {DeclKind::Function, "gemmConfig", "gemmConfig",
     "",
     "{ isa: string; mr: number; nr: number; mc: number; kc: number; nc: number }", /* cpu */ GemmConfig, /* cuda */ nullptr},
    {DeclKind::Function, "cublasLtStatus", "cublasLtStatus",
     "",
     "{ compiled: boolean; library: string | null; error: string | null }", /* cpu */ CublasLtStatus, /* cuda */ nullptr},
    {DeclKind::Function, "gemmPeakGflops", "gemmPeakGflops",
     "threads: size, seconds: number",
     "number", /* cpu */ GemmPeakGflops, /* cuda */ nullptr},
};

}  // namespace

void RegisterGemm(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
