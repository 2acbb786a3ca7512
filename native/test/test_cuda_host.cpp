// Host-side logic of the CUDA op families (patentgpt/cuda_host.h), checked on any machine:
// launch shapes, the row-major GEMM -> column-major cuBLASLt mapping (replayed here by a
// column-major matmul that follows cuBLASLt's definition, against a plain row-major GEMM), and
// the run-time loader's refusal with a reason when libcublasLt cannot be opened.
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "patentgpt/cuda_host.h"

using namespace pg::cuda_host;

namespace {

// cuBLASLt's matmul, as its documentation defines it: column-major X(i, j) = x[i + j ld];
// D = alpha op(A) op(B) + beta C over `batch` products with strided batch offsets.
void lt_matmul(const LtGemmPlan& p, float alpha, const float* A, const float* B, float beta, float* C) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t j = 0; j < p.n; ++j)
      for (int64_t i = 0; i < p.m; ++i) {
        double acc = 0;
        for (int64_t l = 0; l < p.k; ++l) {
          const float a = p.trans_a ? A[b * p.a.stride + l + i * p.a.ld] : A[b * p.a.stride + i + l * p.a.ld];
          const float x = p.trans_b ? B[b * p.b.stride + j + l * p.b.ld] : B[b * p.b.stride + l + j * p.b.ld];
          acc += static_cast<double>(a) * x;
        }
        float& c = C[b * p.c.stride + i + j * p.c.ld];
        c = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : beta * c));
      }
}

// Our row-major reference (ops.h's gemm contract).
void row_major(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               int64_t sa, const float* B, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc, int64_t sc,
               int64_t batch) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < N; ++c) {
        double acc = 0;
        for (int64_t l = 0; l < K; ++l) {
          const float a = ta ? A[b * sa + l * lda + r] : A[b * sa + r * lda + l];
          const float x = tb ? B[b * sb + c * ldb + l] : B[b * sb + l * ldb + c];
          acc += static_cast<double>(a) * x;
        }
        float& out = C[b * sc + r * ldc + c];
        out = static_cast<float>(alpha * acc + (beta == 0.0f ? 0.0 : beta * out));
      }
}

// Runs a plan's calls as gemm.cu does (pointers advanced per call, beta 1 after the first).
void run_plan(const LtGemmPlan& p, float alpha, const float* A, int64_t sa, const float* B, int64_t sb, float beta,
              float* C) {
  for (int64_t call = 0; call < p.calls; ++call) lt_matmul(p, alpha, B + call * sb, A + call * sa, call ? 1.0f : beta, C);
}

}  // namespace

TEST(grid_covers_n_and_caps_blocks) {
  CHECK(grid_1d(0, 256, 100) == 0);
  CHECK(grid_1d(1, 256, 100) == 1);
  CHECK(grid_1d(256, 256, 100) == 1);
  CHECK(grid_1d(257, 256, 100) == 2);
  CHECK(grid_1d(int64_t{1} << 40, 256, 2112) == 2112);  // grid-stride loop does the rest
  CHECK(grid_1d(1000, 256, 0) == 1);                      // a cap below one block still launches one
}

TEST(row_chunks_cover_rows_without_empty_chunks) {
  for (int64_t N : {1, 7, 255, 256, 257, 1000, 8192, 100003}) {
    const RowChunks rc = row_chunks(N, 256);
    CHECK(rc.chunks >= 1 && rc.chunks <= 256);
    CHECK(rc.chunks * rc.rows_per_chunk >= N);
    CHECK((rc.chunks - 1) * rc.rows_per_chunk < N);  // the last chunk holds a row
  }
  CHECK(row_chunks(0, 256).chunks == 0);
}

TEST(lt_plan_matches_row_major_gemm_for_every_transposition) {
  const int64_t M = 5, N = 7, K = 3, batch = 2;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t pad : {0, 2}) {
        const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
        const int64_t sa = (ta ? K : M) * lda, sb = (tb ? N : K) * ldb, sc = M * ldc;
        std::vector<float> A = pgtest::randn(sa * batch, 1), B = pgtest::randn(sb * batch, 2);
        std::vector<float> C0 = pgtest::randn(sc * batch, 3);
        std::vector<float> want = C0, got = C0;
        row_major(ta, tb, M, N, K, 0.5f, A.data(), lda, sa, B.data(), ldb, sb, 2.0f, want.data(), ldc, sc, batch);
        const LtGemmPlan p = plan_lt_gemm(ta, tb, M, N, K, lda, sa, ldb, sb, ldc, sc, batch);
        CHECK(p.kind == LtGemmPlan::Matmul && p.calls == 1 && p.batch == batch);
        CHECK(p.m == N && p.n == M && p.k == K);
        // cuBLASLt requires ld >= rows of each column-major layout.
        CHECK(p.a.ld >= p.a.rows && p.b.ld >= p.b.rows && p.c.ld >= p.c.rows);
        run_plan(p, 0.5f, A.data(), sa, B.data(), sb, 2.0f, got.data());
        CHECK_CLOSE(got, want, want.size(), 1e-5, 1e-5);
      }
}

TEST(lt_plan_broadcasts_and_accumulates_batches) {
  // strideA 0 broadcasts one A over the batch; strideC 0 sums every batch into one C.
  const int64_t M = 4, N = 3, K = 6, batch = 3;
  std::vector<float> A = pgtest::randn(M * K, 4), B = pgtest::randn(K * N * batch, 5), C0 = pgtest::randn(M * N, 6);
  std::vector<float> want = C0, got = C0;
  row_major(false, false, M, N, K, 1.0f, A.data(), K, 0, B.data(), N, K * N, 1.0f, want.data(), N, 0, 1);
  for (int64_t b = 1; b < batch; ++b)
    row_major(false, false, M, N, K, 1.0f, A.data(), K, 0, B.data() + b * K * N, N, 0, 1.0f, want.data(), N, 0, 1);
  const LtGemmPlan p = plan_lt_gemm(false, false, M, N, K, K, 0, N, K * N, N, 0, batch);
  CHECK(p.calls == batch && p.batch == 1);
  run_plan(p, 1.0f, A.data(), 0, B.data(), K * N, 1.0f, got.data());
  CHECK_CLOSE(got, want, want.size(), 1e-5, 1e-5);
}

TEST(lt_plan_kinds_of_empty_products) {
  CHECK(plan_lt_gemm(false, false, 0, 4, 4, 4, 0, 4, 0, 4, 0, 1).kind == LtGemmPlan::Nothing);
  CHECK(plan_lt_gemm(false, false, 4, 0, 4, 4, 0, 4, 0, 4, 0, 1).kind == LtGemmPlan::Nothing);
  CHECK(plan_lt_gemm(false, false, 4, 4, 4, 4, 0, 4, 0, 4, 0, 0).kind == LtGemmPlan::Nothing);
  CHECK(plan_lt_gemm(false, false, 4, 4, 0, 1, 0, 4, 0, 4, 16, 2).kind == LtGemmPlan::ScaleC);
}

TEST(pointer_alignment_is_the_largest_power_of_two_dividing_the_address) {
  alignas(256) static float buf[128];
  CHECK(pointer_alignment(buf) == 256);
  CHECK(pointer_alignment(buf + 1) == 4);
  CHECK(pointer_alignment(buf + 4) == 16);
  CHECK(pointer_alignment(reinterpret_cast<const char*>(buf) + 2) == 2);
}

TEST(cublaslt_loader_tries_13_then_12_and_an_override_first) {
  unsetenv("PATENTGPT_CUBLASLT");
  std::vector<std::string> names = cublaslt_candidates();
  CHECK(names.size() >= 2);
  CHECK(names[0] == "libcublasLt.so.13" && names[1] == "libcublasLt.so.12");
  setenv("PATENTGPT_CUBLASLT", "/opt/wheel/libcublasLt.so.12", 1);
  names = cublaslt_candidates();
  CHECK(names[0] == "/opt/wheel/libcublasLt.so.12");
  unsetenv("PATENTGPT_CUBLASLT");
}

TEST(cublaslt_loader_says_why_when_absent) {
  const CublasLtLibrary lib = open_cublaslt({"libcublasLt-absent.so.99", "/nonexistent/libcublasLt.so.12"});
  CHECK(lib.handle == nullptr);
  CHECK(lib.error.find("libcublasLt-absent.so.99") != std::string::npos);
  CHECK(lib.error.find("/nonexistent/libcublasLt.so.12") != std::string::npos);
  CHECK(lib.error.find("PATENTGPT_CUBLASLT") != std::string::npos);  // says what to do
}

TEST(cublaslt_loader_refuses_a_library_without_the_entry_points) {
  // libm opens but is not cuBLASLt: refused, naming the missing symbol, never half-loaded.
  const CublasLtLibrary lib = open_cublaslt({"libm.so.6"});
  CHECK(lib.handle == nullptr);
  CHECK(lib.error.find("lacks cublasLtCreate") != std::string::npos);
  CHECK(lib.sym.matmul == nullptr);
}
