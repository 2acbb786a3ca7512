// Bindings of native/cpu/gemm.cpp: gemm, gemmBf16 and gemmF16 (cuBLASLt on CUDA), plus the
// blocking in use and a measured FP32 peak for benchmarks.
#include <vector>

#include "args.h"
#include "cuda_slot.h"
#include "gemm_args.h"
#include "patentgpt/ops.h"

namespace pgnode {

namespace {

// gemm(transA, transB, M, N, K, alpha, A, aOff, lda, strideA, B, bOff, ldb, strideB,
//      beta, C, cOff, ldc, strideC, batch)
template <typename T>
Napi::Value Gemm(const Napi::CallbackInfo& info, const Args& a) {
  const GemmCall<T> g(a);
  if constexpr (sizeof(T) == 2)
    PG_ON(a, gemm_bf16)(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.sa, g.B, g.ldb, g.sb, g.beta, g.C, g.ldc,
                        g.sc, g.batch);
  else
    PG_ON(a, gemm)(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.sa, g.B, g.ldb, g.sb, g.beta, g.C, g.ldc, g.sc,
                   g.batch);
  return info.Env().Undefined();
}

// gemmF16: gemm's arguments with f16 A and B, f32 C, f32 sums. CUDA: cuBLASLt's f16 GEMM. CPU:
// no f16 kernel there, so the operands are widened (exactly) to f32 and the f32 GEMM runs on
// them: a reference, not a fast path.
Napi::Value GemmF16Cpu(const Napi::CallbackInfo& info, const Args& a) {
  const GemmCall<uint16_t> g(a);
  const int64_t na = gemm_args::Extent(a, "A", g.ta ? g.K : g.M, g.ta ? g.M : g.K, g.lda, g.sa, g.batch);
  const int64_t nb = gemm_args::Extent(a, "B", g.tb ? g.N : g.K, g.tb ? g.K : g.N, g.ldb, g.sb, g.batch);
  std::vector<float> A(static_cast<size_t>(na)), B(static_cast<size_t>(nb));
  pg::cast_f16_to_f32(A.data(), g.A, na);
  pg::cast_f16_to_f32(B.data(), g.B, nb);
  pg::gemm(g.ta, g.tb, g.M, g.N, g.K, g.alpha, A.data(), g.lda, g.sa, B.data(), g.ldb, g.sb, g.beta, g.C, g.ldc, g.sc,
           g.batch);
  return info.Env().Undefined();
}

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
Napi::Value GemmF16Cuda(const Napi::CallbackInfo& info, const Args& a) {
  const GemmCall<uint16_t> g(a);
  pg::cuda::gemm_f16(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.sa, g.B, g.ldb, g.sb, g.beta, g.C, g.ldc, g.sc,
                     g.batch);
  return info.Env().Undefined();
}
#endif

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
    {DeclKind::Function, "gemmF16", "gemmF16",
     "transA: boolean, transB: boolean, M: size, N: size, K: size, alpha: number, A: f16, lda: size, strideA: size, B: f16, ldb: size, strideB: size, beta: number, C: f32, ldc: size, strideC: size, batch: size",
     "void", /* cpu */ GemmF16Cpu, /* cuda */ PG_CUDA(GemmF16Cuda)},
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
