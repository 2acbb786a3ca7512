// Every CUDA kernel (native/cuda, patentgpt/cuda_ops.h) against its CPU twin (ops.h) on the same
// random inputs, tolerances scaled to f32 (summation order differs); masks, casts and gathers
// bit for bit. Runs where a GPU is present (scripts/gpu-check.sh); elsewhere each case says why
// it skipped. Index errors found on the device must come back as cuda::Error, not a crash.
#include <array>
#include <cstdio>
#include <stdexcept>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_ops.h"
#include "cuda_test_util.h"

namespace {

using pgtest::down;
using pgtest::Pool;

std::vector<int32_t> ints(size_t n, int32_t lo, int32_t hi, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(lo, hi - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

}  // namespace

TEST(cuda_elementwise_matches_cpu) {
  NEED_GPU();
  Pool p;
  const int64_t n = 100003;
  auto a = pgtest::randn(n, 1), b = pgtest::randn(n, 2);
  std::vector<float> want(n), got;
  float *da = p.up(a), *db = p.up(b), *dout = p.up(std::vector<float>(n));
  pg::add_forward(want.data(), a.data(), b.data(), n);
  pg::cuda::add_forward(dout, da, db, n);
  got = down(dout, n);
  CHECK_CLOSE(got, want, n, 0, 0);
  pg::triad(want.data(), a.data(), b.data(), 0.5f, n);
  pg::cuda::triad(dout, da, db, 0.5f, n);
  got = down(dout, n);
  CHECK_CLOSE(got, want, n, 1e-6, 1e-6);
  pg::axpy(want.data(), a.data(), -2.0f, n);
  pg::cuda::axpy(dout, da, -2.0f, n);
  pg::scale_inplace(want.data(), 3.0f, n);
  pg::cuda::scale_inplace(dout, 3.0f, n);
  got = down(dout, n);
  CHECK_CLOSE(got, want, n, 1e-5, 1e-5);
  CHECK(std::fabs(pg::cuda::sum(da, n) - pg::sum(a.data(), n)) < 1e-6 * n);
  CHECK(std::fabs(pg::cuda::sum_squares(da, n) - pg::sum_squares(a.data(), n)) < 1e-6 * n);
  pg::cuda::fill(dout, 7.0f, n);
  got = down(dout, n);
  CHECK(got[0] == 7.0f && got[n - 1] == 7.0f);
  // casts: bit for bit, NaN and subnormals included
  std::vector<float> special = {0.0f, -0.0f, 1e-8f, 6e-5f, 65504.0f, 70000.0f, 1.0f / 3.0f, NAN, INFINITY};
  special.insert(special.end(), a.begin(), a.begin() + 1000);
  const int64_t m = static_cast<int64_t>(special.size());
  float* ds = p.up(special);
  uint16_t* dh = p.up(std::vector<uint16_t>(m));
  std::vector<uint16_t> hw(m);
  pg::cast_f32_to_bf16(hw.data(), special.data(), m);
  pg::cuda::cast_f32_to_bf16(dh, ds, m);
  CHECK(down(dh, m) == hw);
  pg::cast_f32_to_f16(hw.data(), special.data(), m);
  pg::cuda::cast_f32_to_f16(dh, ds, m);
  CHECK(down(dh, m) == hw);
  std::vector<float> back(m);
  pg::cast_f16_to_f32(back.data(), hw.data(), m);
  pg::cuda::cast_f16_to_f32(ds, dh, m);
  auto gb = down(ds, m);
  CHECK(std::memcmp(gb.data(), back.data(), m * 4) == 0);
}

TEST(cuda_pointwise_math_matches_cpu) {
  NEED_GPU();
  Pool p;
  const int64_t N = 37, C = 129, n = N * C;
  auto a = pgtest::randn(n, 3), col = pgtest::randn(N, 4), g = pgtest::randn(n, 5);
  for (auto& v : col) v = std::fabs(v) + 0.5f;  // divisors away from 0
  float *da = p.up(a), *dc = p.up(col), *dg = p.up(g), *o1 = p.up(std::vector<float>(n)), *o2 = p.up(std::vector<float>(n));
  for (int op = 0; op <= static_cast<int>(pg::BinaryOp::Maximum); ++op) {
    const auto bop = static_cast<pg::BinaryOp>(op);
    std::vector<float> w1(n), w2(n);
    pg::binary_forward(w1.data(), a.data(), col.data(), n, n, 1, N, C, bop);
    pg::cuda::binary_forward(o1, da, dc, n, n, 1, N, C, bop);
    CHECK_DEVICE(o1, n, w1, 1e-6, 1e-6);
    pg::binary_backward(w1.data(), w2.data(), g.data(), a.data(), col.data(), n, n, 1, N, C, bop);
    pg::cuda::binary_backward(o1, o2, dg, da, dc, n, n, 1, N, C, bop);
    CHECK_DEVICE(o1, n, w1, 1e-6, 1e-6);
    CHECK_DEVICE(o2, n, w2, 1e-6, 1e-6);
  }
  std::vector<float> ws(N);
  float* dsum = p.up(std::vector<float>(N));
  pg::sum_broadcast(ws.data(), g.data(), n, N, C);
  pg::cuda::sum_broadcast(dsum, dg, n, N, C);
  CHECK_DEVICE(dsum, N, ws, 1e-5, 1e-5);
  std::vector<float> pos(a);
  for (auto& v : pos) v = std::fabs(v) + 0.1f;
  float* dp = p.up(pos);
  for (int op = 0; op <= static_cast<int>(pg::UnaryOp::Clamp); ++op) {
    const auto uop = static_cast<pg::UnaryOp>(op);
    const float* x = uop == pg::UnaryOp::Log ? pos.data() : a.data();
    const float* dx = uop == pg::UnaryOp::Log ? dp : da;
    std::vector<float> wf(n), wb(n);
    pg::unary_forward(wf.data(), x, n, uop, -0.5f, 0.5f);
    pg::cuda::unary_forward(o1, dx, n, uop, -0.5f, 0.5f);
    CHECK_DEVICE(o1, n, wf, 1e-6, 1e-5);
    pg::unary_backward(wb.data(), g.data(), x, wf.data(), n, uop, -0.5f, 0.5f);
    pg::cuda::unary_backward(o2, dg, dx, o1, n, uop, -0.5f, 0.5f);
    CHECK_DEVICE(o2, n, wb, 1e-6, 1e-5);
  }
  auto cond = ints(n, 0, 2, 6);
  int32_t* dcond = p.up(cond);
  std::vector<float> w1(n), w2(n);
  pg::where_forward(w1.data(), cond.data(), a.data(), col.data(), n, n, 1, N, C);
  pg::cuda::where_forward(o1, dcond, da, dc, n, n, 1, N, C);
  CHECK_DEVICE(o1, n, w1, 0, 0);
  pg::where_backward(w1.data(), w2.data(), g.data(), cond.data(), n);
  pg::cuda::where_backward(o1, o2, dg, dcond, n);
  CHECK_DEVICE(o1, n, w1, 0, 0);
  CHECK_DEVICE(o2, n, w2, 0, 0);
}

TEST(cuda_reductions_match_cpu) {
  NEED_GPU();
  Pool p;
  for (auto [outer, D, inner] : {std::array<int64_t, 3>{3, 2000, 1}, {5, 17, 33}, {1, 7, 1}}) {
    const int64_t n = outer * D * inner, m = outer * inner;
    auto x = pgtest::randn(n, 7);
    float *dx = p.up(x), *dout = p.up(std::vector<float>(m)), *dgrad = p.up(std::vector<float>(n));
    std::vector<float> w(m), wg(n);
    pg::sum_dim_forward(w.data(), x.data(), outer, D, inner, 0.5f);
    pg::cuda::sum_dim_forward(dout, dx, outer, D, inner, 0.5f);
    CHECK_DEVICE(dout, m, w, 1e-5, 1e-5);
    pg::sum_dim_backward(wg.data(), w.data(), outer, D, inner, 2.0f);
    pg::cuda::sum_dim_backward(dgrad, dout, outer, D, inner, 2.0f);
    CHECK_DEVICE(dgrad, n, wg, 1e-5, 1e-5);
    std::vector<int32_t> wi(m);
    int32_t* di = p.up(std::vector<int32_t>(m));
    pg::max_dim_forward(w.data(), wi.data(), x.data(), outer, D, inner);
    pg::cuda::max_dim_forward(dout, di, dx, outer, D, inner);
    CHECK_DEVICE(dout, m, w, 0, 0);
    CHECK(down(di, m) == wi);
    const int64_t K = 3, mk = outer * K * inner;
    auto idx = ints(mk, 0, static_cast<int32_t>(D), 8);
    auto src = pgtest::randn(mk, 9);
    int32_t* didx = p.up(idx);
    float *dsrc = p.up(src), *dg = p.up(std::vector<float>(mk));
    std::vector<float> wgath(mk), wsc(n, 0.0f);
    pg::gather_forward(wgath.data(), x.data(), idx.data(), outer, D, K, inner);
    pg::cuda::gather_forward(dg, dx, didx, outer, D, K, inner);
    CHECK_DEVICE(dg, mk, wgath, 0, 0);
    float* dsc = p.up(std::vector<float>(n, 0.0f));
    pg::scatter_add(wsc.data(), src.data(), idx.data(), outer, D, K, inner);
    pg::cuda::scatter_add(dsc, dsrc, didx, outer, D, K, inner);
    CHECK_DEVICE(dsc, n, wsc, 1e-6, 1e-6);
  }
  const int64_t N = 9, C = 3001;
  auto x = pgtest::randn(N * C, 10, 3.0f), g = pgtest::randn(N * C, 11);
  float *dx = p.up(x), *dg = p.up(g), *dy = p.up(std::vector<float>(N * C)), *dd = p.up(std::vector<float>(N * C));
  std::vector<float> y(N * C), d(N * C);
  using Fwd = void (*)(float*, const float*, int64_t, int64_t);
  using Bwd = void (*)(float*, const float*, const float*, int64_t, int64_t);
  struct Pair {
    Fwd fwd, cuda_fwd;
    Bwd bwd, cuda_bwd;
    double atol;  // log-softmax values are larger than softmax's, so is their absolute error
  };
  for (const Pair& f : {Pair{pg::softmax_forward, pg::cuda::softmax_forward, pg::softmax_backward,
                             pg::cuda::softmax_backward, 1e-7},
                        Pair{pg::log_softmax_forward, pg::cuda::log_softmax_forward, pg::log_softmax_backward,
                             pg::cuda::log_softmax_backward, 1e-5}}) {
    f.fwd(y.data(), x.data(), N, C);
    f.cuda_fwd(dy, dx, N, C);
    CHECK_DEVICE(dy, N * C, y, f.atol, 1e-5);
    f.bwd(d.data(), g.data(), y.data(), N, C);
    f.cuda_bwd(dd, dg, dy, N, C);
    CHECK_DEVICE(dd, N * C, d, f.atol, 1e-4);
  }
}

TEST(cuda_llama_ops_match_cpu) {
  NEED_GPU();
  Pool p;
  const int64_t N = 33, C = 2048 + 17;
  auto x = pgtest::randn(N * C, 12), w = pgtest::randn(C, 13), g = pgtest::randn(N * C, 14);
  float *dx = p.up(x), *dw = p.up(w), *dg = p.up(g), *dout = p.up(std::vector<float>(N * C)), *drstd = p.up(std::vector<float>(N));
  std::vector<float> out(N * C), rstd(N), gx(N * C), gw(C, 0.25f);
  pg::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-5f);
  pg::cuda::rmsnorm_forward(dout, drstd, dx, dw, N, C, 1e-5f);
  CHECK_DEVICE(dout, N * C, out, 1e-5, 1e-5);
  CHECK_DEVICE(drstd, N, rstd, 1e-6, 1e-5);
  float *dgx = p.up(std::vector<float>(N * C)), *dgw = p.up(std::vector<float>(C, 0.25f));
  pg::rmsnorm_backward(gx.data(), gw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C);
  pg::cuda::rmsnorm_backward(dgx, dgw, dg, dx, dw, drstd, N, C);
  CHECK_DEVICE(dgx, N * C, gx, 1e-5, 1e-4);
  CHECK_DEVICE(dgw, C, gw, 1e-4, 1e-4);  // accumulated onto 0.25
  // rope: positions up to 16K, the CPU's f32 angle arithmetic
  const int64_t T = 40, H = 3, D = 128;
  auto q = pgtest::randn(T * H * D, 15);
  auto pos = ints(T, 0, 16384, 16);
  float* dq = p.up(q);
  int32_t* dpos = p.up(pos);
  float* dr = p.up(std::vector<float>(T * H * D));
  std::vector<float> r(T * H * D);
  pg::rope_forward(r.data(), q.data(), pos.data(), T, H, D, 500000.0f, 4.0f);
  pg::cuda::rope_forward(dr, dq, dpos, T, H, D, 500000.0f, 4.0f);
  CHECK_DEVICE(dr, T * H * D, r, 1e-6, 1e-6);
  pg::rope_backward(r.data(), r.data(), pos.data(), T, H, D, 500000.0f, 4.0f);  // in place, as allowed
  pg::cuda::rope_backward(dr, dr, dpos, T, H, D, 500000.0f, 4.0f);
  CHECK_DEVICE(dr, T * H * D, r, 1e-6, 1e-6);
  // swiglu
  const int64_t n = 50001;
  auto a = pgtest::randn(n, 17, 4.0f), b = pgtest::randn(n, 18), d = pgtest::randn(n, 19);
  float *da = p.up(a), *db = p.up(b), *dd = p.up(d), *o1 = p.up(std::vector<float>(n)), *o2 = p.up(std::vector<float>(n));
  std::vector<float> s1(n), s2(n);
  pg::swiglu_forward(s1.data(), a.data(), b.data(), n);
  pg::cuda::swiglu_forward(o1, da, db, n);
  CHECK_DEVICE(o1, n, s1, 1e-6, 1e-5);
  pg::swiglu_backward(s1.data(), s2.data(), d.data(), a.data(), b.data(), n);
  pg::cuda::swiglu_backward(o1, o2, dd, da, db, n);
  CHECK_DEVICE(o1, n, s1, 1e-6, 1e-5);
  CHECK_DEVICE(o2, n, s2, 1e-6, 1e-5);
}

TEST(cuda_embedding_cross_entropy_adamw_dropout_match_cpu) {
  NEED_GPU();
  Pool p;
  const int64_t N = 50, V = 1000, C = 64;
  auto table = pgtest::randn(V * C, 20), g = pgtest::randn(N * C, 21);
  auto ids = ints(N, 0, static_cast<int32_t>(V), 22);
  ids[3] = ids[7];  // a repeated id: its gradient rows add
  float *dt = p.up(table), *dg = p.up(g), *de = p.up(std::vector<float>(N * C)), *ddt = p.up(std::vector<float>(V * C, 0.0f));
  int32_t* dids = p.up(ids);
  std::vector<float> e(N * C), dtab(V * C, 0.0f);
  pg::embedding_forward(e.data(), ids.data(), table.data(), N, C);
  pg::cuda::embedding_forward(de, dids, dt, N, C, V);
  CHECK_DEVICE(de, N * C, e, 0, 0);
  pg::embedding_backward(dtab.data(), g.data(), ids.data(), N, C);
  pg::cuda::embedding_backward(ddt, dg, dids, N, C, V);
  CHECK_DEVICE(ddt, V * C, dtab, 1e-6, 1e-6);
  // an id out of range is an argument error naming it, and the process lives on
  std::vector<int32_t> bad(ids);
  bad[11] = static_cast<int32_t>(V) + 5;
  int32_t* dbad = p.up(bad);
  bool threw = false;
  try {
    pg::cuda::embedding_forward(de, dbad, dt, N, C, V);
  } catch (const pg::cuda::Error& err) {
    threw = err.bad_argument && std::string(err.what()).find("id 1005 at position 11") != std::string::npos;
  }
  CHECK(threw);
  // cross-entropy and log-probs over a vocabulary row, ignore_index rows zero
  const int64_t R = 13, VV = 32000;
  auto logits = pgtest::randn(R * VV, 23, 2.0f), dl = pgtest::randn(R, 24);
  auto targets = ints(R, 0, static_cast<int32_t>(VV), 25);
  targets[4] = -100;
  float *dlog = p.up(logits), *ddl = p.up(dl), *dloss = p.up(std::vector<float>(R)), *dlse = p.up(std::vector<float>(R));
  float* dgrad = p.up(std::vector<float>(R * VV));
  int32_t* dtg = p.up(targets);
  std::vector<float> loss(R), lse(R), grad(R * VV);
  pg::cross_entropy_forward(loss.data(), lse.data(), logits.data(), targets.data(), R, VV, -100);
  pg::cuda::cross_entropy_forward(dloss, dlse, dlog, dtg, R, VV, -100);
  CHECK_DEVICE(dloss, R, loss, 1e-5, 1e-5);
  CHECK_DEVICE(dlse, R, lse, 1e-5, 1e-5);
  pg::cross_entropy_backward(grad.data(), dl.data(), logits.data(), lse.data(), targets.data(), R, VV, -100);
  pg::cuda::cross_entropy_backward(dgrad, ddl, dlog, dlse, dtg, R, VV, -100);
  CHECK_DEVICE(dgrad, R * VV, grad, 1e-7, 1e-4);
  targets[4] = 7;
  int32_t* dids2 = p.up(targets);
  pg::logprob_forward(loss.data(), lse.data(), logits.data(), targets.data(), R, VV);
  pg::cuda::logprob_forward(dloss, dlse, dlog, dids2, R, VV);
  CHECK_DEVICE(dloss, R, loss, 1e-5, 1e-5);
  pg::logprob_backward(grad.data(), dl.data(), logits.data(), lse.data(), targets.data(), R, VV);
  pg::cuda::logprob_backward(dgrad, ddl, dlog, dlse, dids2, R, VV);
  CHECK_DEVICE(dgrad, R * VV, grad, 1e-7, 1e-4);
  // AdamW: the same f32 constants on both devices
  const int64_t n = 10007;
  auto prm = pgtest::randn(n, 26), gr = pgtest::randn(n, 27);
  std::vector<float> m(n, 0.0f), v(n, 0.0f);
  float *dprm = p.up(prm), *dm = p.up(m), *dv = p.up(v), *dgr = p.up(gr);
  for (int64_t step = 1; step <= 3; ++step) {
    pg::adamw_step(prm.data(), m.data(), v.data(), gr.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
    pg::cuda::adamw_step(dprm, dm, dv, dgr, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step, 0.5f);
  }
  CHECK_DEVICE(dprm, n, prm, 1e-6, 1e-5);
  CHECK_DEVICE(dv, n, v, 1e-9, 1e-5);
  // dropout: the same mask, bit for bit
  auto x = pgtest::randn(n, 28);
  float *dx = p.up(x), *dy = p.up(std::vector<float>(n));
  std::vector<float> y(n);
  pg::dropout_forward(y.data(), x.data(), n, 0.3, 1234, 99);
  pg::cuda::dropout_forward(dy, dx, n, 0.3, 1234, 99);
  CHECK_DEVICE(dy, n, y, 0, 0);
}

TEST(cuda_gemm_matches_cpu_or_says_why_not) {
  NEED_GPU();
  const std::string status = pg::cuda::cublaslt_status();
  Pool p;
  const int64_t M = 33, N = 65, K = 47, batch = 3;
  auto A = pgtest::randn(M * K * batch, 30), B = pgtest::randn(K * N * batch, 31), C0 = pgtest::randn(M * N * batch, 32);
  float *dA = p.up(A), *dB = p.up(B), *dC = p.up(C0);
  if (!status.empty()) {  // no cuBLASLt: the call fails with the reason, nothing crashes
    bool threw = false;
    try {
      pg::cuda::gemm(false, false, M, N, K, 1.0f, dA, K, M * K, dB, N, K * N, 0.0f, dC, N, M * N, batch);
    } catch (const pg::cuda::Error& e) {
      threw = std::string(e.what()).find("libcublasLt") != std::string::npos || std::string(e.what()).find("cublasLt") != std::string::npos;
    }
    CHECK(threw);
    std::printf("skip: cuBLASLt unusable (%s)\n", status.c_str());
    return;
  }
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int64_t sc : {M * N, int64_t{0}}) {
        std::vector<float> want(C0);
        const int64_t lda = ta ? M : K, ldb = tb ? K : N;
        std::string err;
        pg::cuda_memcpy(dC, C0.data(), C0.size() * 4, 0, err);
        pg::gemm(ta, tb, M, N, K, 0.5f, A.data(), lda, M * K, B.data(), ldb, K * N, 1.5f, want.data(), N, sc, batch);
        pg::cuda::gemm(ta, tb, M, N, K, 0.5f, dA, lda, M * K, dB, ldb, K * N, 1.5f, dC, N, sc, batch);
        CHECK_DEVICE(dC, C0.size(), want, 1e-4, 1e-4);
      }
  // bf16 inputs, f32 accumulation
  std::vector<uint16_t> Ah(M * K), Bh(K * N);
  pg::cast_f32_to_bf16(Ah.data(), A.data(), M * K);
  pg::cast_f32_to_bf16(Bh.data(), B.data(), K * N);
  uint16_t *dAh = p.up(Ah), *dBh = p.up(Bh);
  std::vector<float> want(M * N);
  pg::gemm_bf16(false, true, M, N, K, 1.0f, Ah.data(), K, 0, Bh.data(), K, 0, 0.0f, want.data(), N, 0, 1);
  pg::cuda::gemm_bf16(false, true, M, N, K, 1.0f, dAh, K, 0, dBh, K, 0, 0.0f, dC, N, 0, 1);
  CHECK_DEVICE(dC, M * N, want, 1e-3, 1e-3);
}

#else
TEST(cuda_ops_not_compiled) { std::printf("skip: built without CUDA\n"); }
#endif
