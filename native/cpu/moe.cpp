// Sparse mixture of experts, dropless (MegaBlocks): router top-k, dispatch (sort slots by expert),
// permute (gather rows into expert order), grouped GEMM over the experts' row groups, combine
// (weighted un-permute). A slot is one (token n, choice j) pair, numbered n * k + j; M = N * k.
// Each data-movement op's backward is its opposite, written as a gather through the inverse
// permutation (slot_pos), so backward never scatters with atomics and is deterministic.
#include <cmath>
#include <cstring>

#include "patentgpt/gemv.h"
#include "patentgpt/moe_experts.h"
#include "patentgpt/ops.h"
#include "patentgpt/runtime.h"
#include "simd.h"

namespace pg {

namespace {

// Rows handed to a thread at once: enough work per task for short rows.
int64_t row_grain(int64_t C) { return C >= kElementwiseGrain ? 1 : kElementwiseGrain / (C > 0 ? C : 1); }

PG_CLONES void axpy_row(float* dst, const float* src, float alpha, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += alpha * src[i];
}

// The router's order: descending, NaN above every number (torch.topk's order), so a NaN logit
// is chosen and the row's NaN weights reach the output instead of a NaN being routed around.
// Equal values (NaN among NaN too) are not above each other: ties keep the lower id first.
inline bool ranks_above(float v, float u) { return v > u || (std::isnan(v) && !std::isnan(u)); }

// linear()'s GEMV_MAX_ROWS (src/tensor/ops/matmul.ts): a group of at most this many rows runs
// the GEMV, a larger one the packed GEMM (see experts_forward).
constexpr int64_t kGemvMaxRows = 64;

PG_CLONES float dot_row(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// y (M, O) = each expert's row group of xs (M, I) @ its weight^T, weight(e) the (O, I) matrix of
// expert e (a slice of one stacked tensor, or the expert's own storage). Per group, the kernel
// linear() picks for that many rows (its GEMV_MAX_ROWS, src/tensor/ops/matmul.ts): a small group
// (decoding) streams its weights once through the GEMV, a larger one runs the packed GEMM. Each
// threads over its rows and columns. So a group gives bit for bit what linear() gives on its rows,
// whichever way the layer is run.
template <class Weight>
void experts_forward(float* y, const float* xs, Weight weight, const int32_t* offsets, int64_t E, int64_t O, int64_t I) {
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = offsets[e], rows = offsets[e + 1] - r0;
    if (rows == 0 || O == 0) continue;
    const float* w = weight(e);
    if (rows <= kGemvMaxRows) gemv(y + r0 * O, O, xs + r0 * I, I, w, I, rows, O, I, false);
    else gemm(false, true, rows, O, I, 1.0f, xs + r0 * I, I, 0, w, I, 0, 0.0f, y + r0 * O, O, 0, 1);
  }
}

}  // namespace

// idx, w (k); l (E): one token's routing (the row body of moe_router_forward, also called by the
// fused decode step, native/cpu/decode.cpp, on its own thread).
void moe_router_row(int32_t* idx, float* w, const float* l, int64_t E, int64_t k, bool normalize) {
  // Insertion top-k in the output row itself (w holds the selected logits until the softmax
  // below; no scratch): descending, a later (higher) index goes after an equal value, so ties
  // keep the lowest index first.
  int64_t count = 0;
  for (int64_t e = 0; e < E; ++e) {
    const float v = l[e];
    if (count == k && !ranks_above(v, w[k - 1])) continue;
    int64_t pos = count < k ? count : k - 1;
    while (pos > 0 && ranks_above(v, w[pos - 1])) {
      w[pos] = w[pos - 1];
      idx[pos] = idx[pos - 1];
      --pos;
    }
    w[pos] = v;
    idx[pos] = static_cast<int32_t>(e);
    if (count < k) ++count;
  }
  const float m = w[0];  // the row's maximum
  double z = 0.0;
  if (normalize) {
    for (int64_t j = 0; j < k; ++j) z += std::exp(static_cast<double>(w[j]) - m);
  } else {
    for (int64_t e = 0; e < E; ++e) z += std::exp(static_cast<double>(l[e]) - m);
  }
  for (int64_t j = 0; j < k; ++j) w[j] = static_cast<float>(std::exp(static_cast<double>(w[j]) - m) / z);
}

// indices, weights (N, k); logits (N, E)
void moe_router_forward(int32_t* indices, float* weights, const float* logits, int64_t N, int64_t E, int64_t k,
                        bool normalize) {
  parallel_for(N, row_grain(E * k), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) moe_router_row(indices + n * k, weights + n * k, logits + n * E, E, k, normalize);
  });
}

// dlogits (N, E) written; dweights, weights (N, k); indices (N, k); logits (N, E)
void moe_router_backward(float* dlogits, const float* dweights, const float* weights, const int32_t* indices,
                         const float* logits, int64_t N, int64_t E, int64_t k, bool normalize) {
  parallel_for(N, row_grain(E * k), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* g = dweights + n * k;
      const float* w = weights + n * k;
      const int32_t* idx = indices + n * k;
      float* dl = dlogits + n * E;
      double dot = 0.0;
      for (int64_t j = 0; j < k; ++j) dot += static_cast<double>(w[j]) * g[j];
      if (normalize) {
        // w = softmax over the k selected logits: the others get no gradient.
        std::memset(dl, 0, static_cast<size_t>(E) * sizeof(float));
      } else {
        // w = p at the selected experts, p = softmax over all E: every logit moves p's sum.
        const float* l = logits + n * E;
        const float m = l[idx[0]];
        double z = 0.0;
        for (int64_t e = 0; e < E; ++e) z += std::exp(static_cast<double>(l[e]) - m);
        for (int64_t e = 0; e < E; ++e) dl[e] = static_cast<float>(-std::exp(static_cast<double>(l[e]) - m) / z * dot);
      }
      for (int64_t j = 0; j < k; ++j)
        dl[idx[j]] += static_cast<float>(normalize ? w[j] * (g[j] - dot) : static_cast<double>(w[j]) * g[j]);
    }
  });
}

// order, slot_pos (M); offsets (E + 1); indices (M), each in [0, E)
void moe_dispatch(int32_t* order, int32_t* slot_pos, int32_t* offsets, const int32_t* indices, int64_t M,
                  int64_t E) {
  // Serial counting sort: O(M) integer work, small beside the GEMMs it feeds, and stable.
  std::memset(offsets, 0, static_cast<size_t>(E + 1) * sizeof(int32_t));
  for (int64_t s = 0; s < M; ++s) ++offsets[indices[s] + 1];           // histogram
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];        // cumulative sum: bins
  // Fill each bin in slot order, with offsets[e] as the cursor; then shift the cursors back.
  for (int64_t s = 0; s < M; ++s) {
    const int32_t p = offsets[indices[s]]++;
    order[p] = static_cast<int32_t>(s);
    slot_pos[s] = p;
  }
  for (int64_t e = E; e > 0; --e) offsets[e] = offsets[e - 1];
  offsets[0] = 0;
}

// xs (M, C); x (N, C); order (M)
void moe_permute_forward(float* xs, const float* x, const int32_t* order, int64_t M, int64_t C, int64_t k) {
  if (C == 0) return;
  parallel_for(M, row_grain(C), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      std::memcpy(xs + p * C, x + (order[p] / k) * C, static_cast<size_t>(C) * sizeof(float));
  });
}

// dx (N, C) written; dxs (M, C); slot_pos (M)
void moe_permute_backward(float* dx, const float* dxs, const int32_t* slot_pos, int64_t N, int64_t C, int64_t k) {
  if (C == 0) return;
  parallel_for(N, row_grain(C * k), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      float* d = dx + n * C;
      std::memset(d, 0, static_cast<size_t>(C) * sizeof(float));
      for (int64_t j = 0; j < k; ++j) axpy_row(d, dxs + static_cast<int64_t>(slot_pos[n * k + j]) * C, 1.0f, C);
    }
  });
}

// y (M, O); xs (M, I); w (E, O, I); offsets (E + 1)
void moe_grouped_gemm_forward(float* y, const float* xs, const float* w, const int32_t* offsets, int64_t E,
                              int64_t O, int64_t I) {
  experts_forward(y, xs, [&](int64_t e) { return w + e * O * I; }, offsets, E, O, I);
}

// dxs (M, I) written, dw (E, O, I) accumulated; either may be null. dy (M, O)
void moe_grouped_gemm_backward(float* dxs, float* dw, const float* dy, const float* xs, const float* w,
                               const int32_t* offsets, int64_t E, int64_t O, int64_t I) {
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = offsets[e], rows = offsets[e + 1] - r0;
    if (rows == 0 || I == 0) continue;
    // dxs_e = dy_e @ W_e (zeros when O = 0: nothing flows back)
    if (dxs && O == 0) std::memset(dxs + r0 * I, 0, static_cast<size_t>(rows * I) * sizeof(float));
    else if (dxs) gemm(false, false, rows, I, O, 1.0f, dy + r0 * O, O, 0, w + e * O * I, I, 0, 0.0f, dxs + r0 * I, I, 0, 1);
    // dW_e += dy_e^T @ xs_e
    if (dw && O > 0) gemm(true, false, O, I, rows, 1.0f, dy + r0 * O, O, 0, xs + r0 * I, I, 0, 1.0f, dw + e * O * I, I, 0, 1);
  }
}

// y (M, O); xs (M, I); w: E pointers to (O, I); offsets (E + 1). As moe_grouped_gemm_forward,
// each expert read from its own storage.
void moe_experts_gemm_forward(float* y, const float* xs, const float* const* w, const int32_t* offsets, int64_t E,
                              int64_t O, int64_t I) {
  experts_forward(y, xs, [&](int64_t e) { return w[e]; }, offsets, E, O, I);
}

// dxs (M, I) written; dw: E pointers to (O, I), each written; either may be null. dy (M, O)
void moe_experts_gemm_backward(float* dxs, float* const* dw, const float* dy, const float* xs, const float* const* w,
                               const int32_t* offsets, int64_t E, int64_t O, int64_t I) {
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = offsets[e], rows = offsets[e + 1] - r0;
    // dW_e = dy_e^T @ xs_e (beta 0: written, no zeroed buffer to add into); zeros without rows
    if (dw && (rows == 0 || O == 0 || I == 0)) std::memset(dw[e], 0, static_cast<size_t>(O * I) * sizeof(float));
    else if (dw) gemm(true, false, O, I, rows, 1.0f, dy + r0 * O, O, 0, xs + r0 * I, I, 0, 0.0f, dw[e], I, 0, 1);
    if (rows == 0 || I == 0 || !dxs) continue;
    // dxs_e = dy_e @ W_e (zeros when O = 0: nothing flows back)
    if (O == 0) std::memset(dxs + r0 * I, 0, static_cast<size_t>(rows * I) * sizeof(float));
    else gemm(false, false, rows, I, O, 1.0f, dy + r0 * O, O, 0, w[e], I, 0, 0.0f, dxs + r0 * I, I, 0, 1);
  }
}

// out (N, C); y (M, C); weights (N, k); slot_pos (M)
void moe_combine_forward(float* out, const float* y, const float* weights, const int32_t* slot_pos, int64_t N,
                         int64_t C, int64_t k) {
  if (C == 0) return;
  parallel_for(N, row_grain(C * k), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      float* o = out + n * C;
      std::memset(o, 0, static_cast<size_t>(C) * sizeof(float));
      for (int64_t j = 0; j < k; ++j)
        axpy_row(o, y + static_cast<int64_t>(slot_pos[n * k + j]) * C, weights[n * k + j], C);
    }
  });
}

// dy (M, C), dweights (N, k) written; dout (N, C)
void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const float* weights,
                          const int32_t* slot_pos, int64_t N, int64_t C, int64_t k) {
  parallel_for(N, row_grain(C * k), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* g = dout + n * C;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = n * k + j, p = slot_pos[s];
        float* d = dy + p * C;
        const float wj = weights[s];
        for (int64_t c = 0; c < C; ++c) d[c] = wj * g[c];
        dweights[s] = dot_row(g, y + p * C, C);
      }
    }
  });
}

}  // namespace pg
