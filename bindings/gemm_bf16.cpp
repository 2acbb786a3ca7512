// Bindings of native/cpu/gemm_bf16.cpp: the bf16-compute GEMM (f32 or bf16 inputs rounded to bf16,
// f32 sums and output) and the run-time kernel choice (AMX, AVX-512 BF16, or the f32 fallback).
#include "args.h"
#include "gemm_args.h"
#include "patentgpt/gemm_bf16.h"

namespace pgnode {

namespace {

// The arguments of gemm (bindings/gemm.cpp), same order and checks (gemm_args.h).
template <typename T>
Napi::Value GemmBf16Compute(const Napi::CallbackInfo& info, const Args& a) {
  const GemmCall<T> g(a);
  pg::gemm_bf16_compute(g.ta, g.tb, g.M, g.N, g.K, g.alpha, g.A, g.lda, g.sa, g.B, g.ldb, g.sb, g.beta, g.C, g.ldc,
                        g.sc, g.batch);
  return info.Env().Undefined();
}

// bf16GemmKernel(cap?) -> the kernel in use ('amx', 'avx512bf16' or 'f32'); with cap, first caps
// it there (tests and benches compare kernels; 'amx' lifts the cap).
Napi::Value Bf16GemmKernel(const Napi::CallbackInfo& info, const Args& a) {
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    const std::string cap = info[0].As<Napi::String>().Utf8Value();
    pg::force_bf16_kernel(cap == "amx" ? pg::Bf16Kernel::Amx
                          : cap == "avx512bf16" ? pg::Bf16Kernel::Avx512Bf16
                                                : pg::Bf16Kernel::F32);
  }
  return Napi::String::New(info.Env(), pg::bf16_kernel_name(pg::bf16_kernel()));
}

const Decl kDecls[] = {
    {DeclKind::Function, "gemmBf16Compute", "gemmBf16Compute",
     "transA: boolean, transB: boolean, M: size, N: size, K: size, alpha: number, A: f32, lda: size, strideA: size, B: f32, ldb: size, strideB: size, beta: number, C: f32, ldc: size, strideC: size, batch: size",
     "void", /* cpu */ GemmBf16Compute<float>, /* cuda */ nullptr},
    {DeclKind::Function, "gemmBf16ComputeBf16", "gemmBf16ComputeBf16",
     "transA: boolean, transB: boolean, M: size, N: size, K: size, alpha: number, A: bf16, lda: size, strideA: size, B: bf16, ldb: size, strideB: size, beta: number, C: f32, ldc: size, strideC: size, batch: size",
     "void", /* cpu */ GemmBf16Compute<uint16_t>, /* cuda */ nullptr},
    {DeclKind::Function, "bf16GemmKernel", "bf16GemmKernel",
     "cap?: 'amx' | 'avx512bf16' | 'f32'",
     "'amx' | 'avx512bf16' | 'f32'", /* cpu */ Bf16GemmKernel, /* cuda */ nullptr},
};

}  // namespace

void RegisterGemmBf16(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
