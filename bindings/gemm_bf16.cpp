// Bindings of native/cpu/gemm_bf16.cpp: the bf16-compute GEMM (f32 or bf16 inputs rounded to bf16,
// f32 sums and output) and the run-time kernel choice (AMX, AVX-512 BF16, or the f32 fallback).
#include "args.h"
#include "patentgpt/gemm_bf16.h"

namespace pgnode {

namespace {

// Checked x + y.
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
  return Add(a, a.Mul(batch - 1, stride), Add(a, a.Mul(rows - 1, ld), cols));
}

// The arguments of gemm (bindings/gemm.cpp), same order and checks.
template <typename T>
Napi::Value GemmBf16Compute(const Napi::CallbackInfo& info, const Args& a) {
  const bool ta = a.Bool(0, "transA"), tb = a.Bool(1, "transB");
  const int64_t M = a.Size(2, "M"), N = a.Size(3, "N"), K = a.Size(4, "K");
  const double alpha = a.Num(5, "alpha"), beta = a.Num(14, "beta");
  const int64_t lda = a.Size(8, "lda"), sa = a.Size(9, "strideA");
  const int64_t ldb = a.Size(12, "ldb"), sb = a.Size(13, "strideB");
  const int64_t ldc = a.Size(17, "ldc"), sc = a.Size(18, "strideC");
  const int64_t batch = a.Size(19, "batch");
  const int64_t na = Extent(a, "A", ta ? K : M, ta ? M : K, lda, sa, batch);
  const int64_t nb = Extent(a, "B", tb ? N : K, tb ? K : N, ldb, sb, batch);
  const int64_t nc = Extent(a, "C", M, N, ldc, sc, batch);
  if (sc != 0 && batch > 1 && M > 0 && N > 0 && sc < (M - 1) * ldc + N)
    a.Fail("strideC " + std::to_string(sc) + " makes the batch's C matrices overlap (0 accumulates into one C)");
  const T* A = a.Ptr<T>(6, "A", na);
  const T* B = a.Ptr<T>(10, "B", nb);
  float* C = a.Ptr<float>(15, "C", nc);
  auto overlaps = [&](const void* p, int64_t bytes) {
    const char* c0 = reinterpret_cast<const char*>(C);
    const char* p0 = static_cast<const char*>(p);
    return bytes > 0 && nc > 0 && p0 < c0 + nc * 4 && c0 < p0 + bytes;
  };
  if (overlaps(A, na * static_cast<int64_t>(sizeof(T))) || overlaps(B, nb * static_cast<int64_t>(sizeof(T))))
    a.Fail("C overlaps A or B");
  pg::gemm_bf16_compute(ta, tb, M, N, K, static_cast<float>(alpha), A, lda, sa, B, ldb, sb, static_cast<float>(beta),
                        C, ldc, sc, batch);
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
