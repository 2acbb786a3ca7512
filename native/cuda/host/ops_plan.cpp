// Host-side planning of the CUDA path (cuda_host.h): plain C++, compiled into every build and
// tested on CPU by native/test/test_cuda_host.cpp.
#include "patentgpt/cuda_host.h"

#include <cstdlib>
#include <mutex>

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace pg::cuda_host {

int64_t grid_1d(int64_t n, int threads, int64_t max_blocks) {
  if (n <= 0 || threads <= 0) return 0;
  const int64_t need = (n + threads - 1) / threads;
  int64_t cap = max_blocks > 0 ? max_blocks : 1;
  if (cap > kMaxGridX) cap = kMaxGridX;
  return need < cap ? need : cap;
}

RowChunks row_chunks(int64_t N, int64_t max_chunks) {
  if (N <= 0) return {0, 0};
  const int64_t cap = max_chunks > 0 ? max_chunks : 1;
  int64_t chunks = N < cap ? N : cap;
  const int64_t per = (N + chunks - 1) / chunks;
  chunks = (N + per - 1) / per;  // no empty trailing chunk
  return {chunks, per};
}

LtGemmPlan plan_lt_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t lda,
                        int64_t stride_a, int64_t ldb, int64_t stride_b, int64_t ldc, int64_t stride_c,
                        int64_t batch) {
  LtGemmPlan p{};
  p.kind = (M == 0 || N == 0 || batch == 0) ? LtGemmPlan::Nothing : K == 0 ? LtGemmPlan::ScaleC : LtGemmPlan::Matmul;
  // cuBLASLt's A is our B: row-major B (K, N) is column-major (N, K) = op N; B stored (N, K)
  // (transB) is column-major (K, N) and needs op T. Likewise its B is our A.
  p.trans_a = trans_b;
  p.trans_b = trans_a;
  p.m = N;
  p.n = M;
  p.k = K;
  p.a = {trans_b ? K : N, trans_b ? N : K, ldb, stride_b};
  p.b = {trans_a ? M : K, trans_a ? K : M, lda, stride_a};
  p.c = {N, M, ldc, stride_c};
  // strideC 0 over several batches: every product accumulates into one C, which a strided
  // batched call would write concurrently; run the batches one after another instead.
  if (stride_c == 0 && batch > 1) {
    p.batch = 1;
    p.calls = batch;
  } else {
    p.batch = batch;
    p.calls = batch > 0 ? 1 : 0;
  }
  return p;
}

uint32_t pointer_alignment(const void* p) {
  const auto v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && (v % a) != 0) a >>= 1;
  return a;
}

std::vector<std::string> cublaslt_candidates() {
  std::vector<std::string> names;
  if (const char* env = std::getenv("PATENTGPT_CUBLASLT"); env && *env) names.emplace_back(env);
#if defined(_WIN32)
  names.insert(names.end(), {"cublasLt64_13.dll", "cublasLt64_12.dll"});
#else
  names.insert(names.end(), {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"});
#endif
  return names;
}

namespace {

void* open_lib(const std::string& name, std::string& why) {
#if defined(_WIN32)
  HMODULE h = LoadLibraryA(name.c_str());
  if (!h) why = "LoadLibrary failed (error " + std::to_string(GetLastError()) + ")";
  return reinterpret_cast<void*>(h);
#else
  void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    why = e ? e : "dlopen failed";
  }
  return h;
#endif
}

void* symbol(void* lib, const char* name) {
#if defined(_WIN32)
  return reinterpret_cast<void*>(GetProcAddress(reinterpret_cast<HMODULE>(lib), name));
#else
  return dlsym(lib, name);
#endif
}

void close_lib(void* lib) {
#if defined(_WIN32)
  FreeLibrary(reinterpret_cast<HMODULE>(lib));
#else
  dlclose(lib);
#endif
}

}  // namespace

CublasLtLibrary open_cublaslt(const std::vector<std::string>& names) {
  CublasLtLibrary lib;
  std::string tried;
  for (const std::string& name : names) {
    std::string why;
    void* h = open_lib(name, why);
    if (!h) {
      tried += (tried.empty() ? "" : "; ") + name + ": " + why;
      continue;
    }
    CublasLtSymbols s;
    struct Entry {
      void** slot;
      const char* name;
    } entries[] = {
        {&s.create, "cublasLtCreate"},
        {&s.destroy, "cublasLtDestroy"},
        {&s.get_version, "cublasLtGetVersion"},
        {&s.desc_create, "cublasLtMatmulDescCreate"},
        {&s.desc_destroy, "cublasLtMatmulDescDestroy"},
        {&s.desc_set, "cublasLtMatmulDescSetAttribute"},
        {&s.layout_create, "cublasLtMatrixLayoutCreate"},
        {&s.layout_destroy, "cublasLtMatrixLayoutDestroy"},
        {&s.layout_set, "cublasLtMatrixLayoutSetAttribute"},
        {&s.pref_create, "cublasLtMatmulPreferenceCreate"},
        {&s.pref_destroy, "cublasLtMatmulPreferenceDestroy"},
        {&s.pref_set, "cublasLtMatmulPreferenceSetAttribute"},
        {&s.heuristic, "cublasLtMatmulAlgoGetHeuristic"},
        {&s.matmul, "cublasLtMatmul"},
    };
    std::string missing;
    for (const Entry& e : entries) {
      *e.slot = symbol(h, e.name);
      if (!*e.slot) missing += (missing.empty() ? "" : ", ") + std::string(e.name);
    }
    if (!missing.empty()) {
      close_lib(h);
      tried += (tried.empty() ? "" : "; ") + name + ": lacks " + missing;
      continue;
    }
    lib.handle = h;
    lib.path = name;
    lib.sym = s;
    return lib;
  }
  lib.error = "libcublasLt could not be opened (" + (tried.empty() ? std::string("no names to try") : tried) +
              "); install the CUDA toolkit's cuBLAS or the nvidia-cublas Python wheel and put its lib folder on "
              "LD_LIBRARY_PATH, or set PATENTGPT_CUBLASLT to the library's path";
  return lib;
}

const CublasLtLibrary& cublaslt() {
  static std::once_flag once;
  static CublasLtLibrary* lib = nullptr;  // never destroyed: GEMMs may run during exit
  std::call_once(once, [] { lib = new CublasLtLibrary(open_cublaslt(cublaslt_candidates())); });
  return *lib;
}

}  // namespace pg::cuda_host
