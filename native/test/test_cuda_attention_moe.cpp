// The CUDA fused attention and sparse-MoE kernels (native/cuda/attention.cu, moe.cu) against
// their CPU twins (ops.h) on the same random inputs: attention at each head-dim bucket (64, 128,
// and 80 / 256 through the generic one; 33 and 6 for the path without float4 reads) with GQA, packed sequences (an empty one among them),
// causal and not; MoE routing with a tie, a stable dispatch (bit for bit), permute, grouped GEMMs
// with an empty expert, combine, forward and backward. Tolerances scaled to f32 (summation order
// differs). Runs where a GPU is present (scripts/gpu-check.sh); elsewhere each case says why it
// skipped.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"

#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_attention.h"
#include "patentgpt/cuda_moe.h"
#include "patentgpt/cuda_ops.h"
#include "cuda_test_util.h"

namespace {

using pgtest::down;
using pgtest::Pool;

using pgtest::AttnCase;

}  // namespace

TEST(cuda_attention_matches_cpu_forward_and_backward) {
  NEED_GPU();
  const AttnCase cases[] = {
      {8, 2, 64, {0, 70, 70, 133, 300}, true},
      {4, 4, 128, {0, 257}, true},
      {6, 2, 128, {0, 5, 100}, false},
      {4, 1, 80, {0, 33, 97}, true},
      {2, 1, 256, {0, 48}, true},
      {3, 3, 33, {0, 40, 41}, true},  // D not a multiple of 4: the single-float dot products
      {2, 2, 6, {0, 35}, false},
  };
  for (const AttnCase& c : cases) {
    Pool p;
    const int64_t nseq = static_cast<int64_t>(c.cu.size()) - 1, T = c.cu.back();
    const int64_t nq = T * c.H * c.D, nkv = T * c.Hkv * c.D, nl = c.H * T;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.D));
    auto q = pgtest::randn(nq, 1), k = pgtest::randn(nkv, 2), v = pgtest::randn(nkv, 3), g = pgtest::randn(nq, 4);
    std::vector<float> out(nq), lse(nl), dq(nq), dk(nkv), dv(nkv), delta(nl);
    pg::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), c.cu.data(), nseq, T, c.H, c.Hkv, c.D,
                          scale, c.causal);
    pg::attention_backward(dq.data(), dk.data(), dv.data(), delta.data(), g.data(), out.data(), lse.data(), q.data(),
                           k.data(), v.data(), c.cu.data(), nseq, T, c.H, c.Hkv, c.D, scale, c.causal);
    float *Q = p.up(q), *K = p.up(k), *V = p.up(v), *G = p.up(g);
    float *O = p.zeros<float>(nq), *L = p.zeros<float>(nl), *dQ = p.zeros<float>(nq), *dK = p.zeros<float>(nkv),
          *dV = p.zeros<float>(nkv), *De = p.zeros<float>(nl);
    int32_t* cu = p.up(c.cu);
    pg::cuda::attention_forward(O, L, Q, K, V, cu, nseq, T, c.H, c.Hkv, c.D, scale, c.causal);
    CHECK_DEVICE(O, nq, out, 2e-5, 1e-4);
    CHECK_DEVICE(L, nl, lse, 2e-5, 1e-5);
    pg::cuda::attention_backward(dQ, dK, dV, De, G, O, L, Q, K, V, cu, nseq, T, c.H, c.Hkv, c.D, scale,
                                 c.causal);
    CHECK_DEVICE(dQ, nq, dq, 5e-5, 2e-4);
    CHECK_DEVICE(dK, nkv, dk, 5e-5, 2e-4);
    CHECK_DEVICE(dV, nkv, dv, 5e-5, 2e-4);
  }
}

TEST(cuda_moe_matches_cpu_forward_and_backward) {
  NEED_GPU();
  Pool p;
  const int64_t N = 300, E = 8, k = 2, C = 48, O = 72, M = N * k;
  auto logits = pgtest::randn(N * E, 11, 2.0f);
  logits[0] = logits[1] = logits[2] = logits[3] = 1.5f;  // a tie: the lower ids win
  for (int64_t n = 0; n < N; ++n) logits[n * E + 7] = -30.0f;  // expert 7 never chosen: an empty group
  for (bool normalize : {true, false}) {
    std::vector<int32_t> idx(M);
    std::vector<float> w(M);
    pg::moe_router_forward(idx.data(), w.data(), logits.data(), N, E, k, normalize);
    float* dl = p.up(logits);
    int32_t* di = p.zeros<int32_t>(M);
    float* dw = p.zeros<float>(M);
    pg::cuda::moe_router_forward(di, dw, dl, N, E, k, normalize);
    CHECK(down(di, M) == idx);
    CHECK_DEVICE(dw, M, w, 1e-6, 1e-5);
    auto gw = pgtest::randn(M, 12);
    std::vector<float> dlog(N * E);
    pg::moe_router_backward(dlog.data(), gw.data(), w.data(), idx.data(), logits.data(), N, E, k, normalize);
    float* ddl = p.zeros<float>(N * E);
    pg::cuda::moe_router_backward(ddl, p.up(gw), dw, di, dl, N, E, k, normalize);
    CHECK_DEVICE(ddl, N * E, dlog, 1e-6, 1e-5);
  }
  // Dispatch: the same stable counting sort, bit for bit.
  std::vector<int32_t> idx(M);
  std::vector<float> w(M);
  pg::moe_router_forward(idx.data(), w.data(), logits.data(), N, E, k, true);
  std::vector<int32_t> order(M), slot_pos(M), offsets(E + 1);
  pg::moe_dispatch(order.data(), slot_pos.data(), offsets.data(), idx.data(), M, E);
  int32_t *dord = p.zeros<int32_t>(M), *dpos = p.zeros<int32_t>(M), *doff = p.zeros<int32_t>(E + 1);
  pg::cuda::moe_dispatch(dord, dpos, doff, p.up(idx), M, E);
  CHECK(down(dord, M) == order && down(dpos, M) == slot_pos && down(doff, E + 1) == offsets);
  CHECK(offsets[8] - offsets[7] == 0);
  // Permute, grouped GEMM (stacked and per expert), combine; and their backward.
  auto x = pgtest::randn(N * C, 13), wt = pgtest::randn(E * O * C, 14, 0.2f), gy = pgtest::randn(N * O, 15);
  std::vector<float> xs(M * C), y(M * O), out(N * O);
  pg::moe_permute_forward(xs.data(), x.data(), order.data(), M, C, k);
  pg::moe_grouped_gemm_forward(y.data(), xs.data(), wt.data(), offsets.data(), E, O, C);
  pg::moe_combine_forward(out.data(), y.data(), w.data(), slot_pos.data(), N, O, k);
  float *dx = p.up(x), *dwt = p.up(wt), *dww = p.up(w), *dxs = p.zeros<float>(M * C), *dy = p.zeros<float>(M * O),
        *dout = p.zeros<float>(N * O);
  pg::cuda::moe_permute_forward(dxs, dx, dord, M, C, k);
  CHECK_DEVICE(dxs, M * C, xs, 0, 0);
  pg::cuda::moe_grouped_gemm_forward(dy, dxs, dwt, doff, offsets.data(), E, O, C);
  CHECK_DEVICE(dy, M * O, y, 1e-4, 1e-4);
  std::vector<const float*> dwlist(E);
  for (int64_t e = 0; e < E; ++e) dwlist[e] = dwt + e * O * C;
  pg::cuda::moe_experts_gemm_forward(dy, dxs, dwlist.data(), doff, offsets.data(), E, O, C);
  CHECK_DEVICE(dy, M * O, y, 1e-4, 1e-4);
  pg::cuda::moe_combine_forward(dout, dy, dww, dpos, N, O, k);
  CHECK_DEVICE(dout, N * O, out, 1e-4, 1e-4);
  // backward: combine, grouped GEMM (dxs written, dW accumulated), permute
  std::vector<float> g_y(M * O), g_w(M), g_xs(M * C), g_W(E * O * C, 0.5f), g_x(N * C);
  pg::moe_combine_backward(g_y.data(), g_w.data(), gy.data(), y.data(), w.data(), slot_pos.data(), N, O, k);
  pg::moe_grouped_gemm_backward(g_xs.data(), g_W.data(), g_y.data(), xs.data(), wt.data(), offsets.data(), E, O, C);
  pg::moe_permute_backward(g_x.data(), g_xs.data(), slot_pos.data(), N, C, k);
  float *dgy = p.up(gy), *dg_y = p.zeros<float>(M * O), *dg_w = p.zeros<float>(M), *dg_xs = p.zeros<float>(M * C),
        *dg_W = p.up(std::vector<float>(E * O * C, 0.5f)), *dg_x = p.zeros<float>(N * C);
  pg::cuda::moe_combine_backward(dg_y, dg_w, dgy, dy, dww, dpos, N, O, k);
  CHECK_DEVICE(dg_y, M * O, g_y, 1e-6, 1e-6);
  CHECK_DEVICE(dg_w, M, g_w, 1e-4, 1e-4);
  pg::cuda::moe_grouped_gemm_backward(dg_xs, dg_W, dg_y, dxs, dwt, doff, offsets.data(), E, O, C);
  CHECK_DEVICE(dg_xs, M * C, g_xs, 1e-4, 1e-4);
  CHECK_DEVICE(dg_W, E * O * C, g_W, 1e-4, 1e-4);
  pg::cuda::moe_permute_backward(dg_x, dg_xs, dpos, N, C, k);
  CHECK_DEVICE(dg_x, N * C, g_x, 1e-4, 1e-4);
  // per-expert weight gradients are written, zeros for the empty expert 7
  std::vector<float*> dWl(E);
  for (int64_t e = 0; e < E; ++e) dWl[e] = p.up(std::vector<float>(O * C, 9.0f));
  pg::cuda::moe_experts_gemm_backward(dg_xs, dWl.data(), dg_y, dxs, dwlist.data(), doff, offsets.data(), E, O, C);
  for (int64_t e = 0; e < E; ++e) {
    std::vector<float> want(g_W.begin() + e * O * C, g_W.begin() + (e + 1) * O * C);
    for (auto& v : want) v -= 0.5f;  // g_W started at 0.5 (accumulated); these are written
    CHECK_DEVICE(dWl[e], O * C, want, 1e-4, 1e-4);
  }
}

#else
TEST(cuda_attention_moe_not_compiled) { std::printf("skip: built without CUDA\n"); }
#endif
