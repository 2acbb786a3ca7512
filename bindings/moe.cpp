// Bindings of native/cpu/moe.cpp. Every index the kernels trust is checked here: expert ids in
// [0, E), order and slot_pos permutations of [0, M), offsets nondecreasing from 0 to M. The
// moeExperts* pair takes each expert's own weight storage (an "f32[]" list) instead of a stacked
// (E, O, I) tensor.
#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "cuda_index.h"
#include "cuda_slot.h"
#include "patentgpt/moe_experts.h"
#include "patentgpt/ops.h"
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
#include "patentgpt/cuda_index_check.h"
#include "patentgpt/cuda_moe.h"
#endif

namespace pgnode {

namespace {

// On CUDA the expert-id and permutation checks are enqueued on the device instead, before the
// op's kernels, which halt if they fail (cuda_index_check.h): nothing is read back.
void CheckExperts(const Args& a, const int32_t* idx, int64_t M, int64_t E) {
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) return pg::cuda::check_expert_ids(a.signature().label, idx, M, E);
#endif
  for (int64_t s = 0; s < M; ++s)
    if (idx[s] < 0 || idx[s] >= E)
      a.Fail("expert " + std::to_string(idx[s]) + " at slot " + std::to_string(s) + " is outside [0, E = " +
             std::to_string(E) + ")");
}

// A permutation of [0, M): what the dispatch plan's order and slot_pos always are.
void CheckPermutation(const Args& a, const char* name, const int32_t* p, int64_t M) {
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) return pg::cuda::check_permutation(a.signature().label, name, p, M);
#endif
  std::vector<uint8_t> seen(static_cast<size_t>(M), 0);
  for (int64_t i = 0; i < M; ++i) {
    if (p[i] < 0 || p[i] >= M || seen[static_cast<size_t>(p[i])])
      a.Fail(std::string(name) + " is not a permutation of [0, M = " + std::to_string(M) + "): " +
             std::to_string(p[i]) + " at " + std::to_string(i));
    seen[static_cast<size_t>(p[i])] = 1;
  }
}

// Returns the offsets on the host (a copy in `keep` on CUDA), which the CUDA GEMMs plan from: their
// per-expert row counts size cuBLASLt's calls, so here the read-back stays (one per GEMM call).
const int32_t* CheckOffsets(const Args& a, const int32_t* off, int64_t E, int64_t M, std::vector<int32_t>& keep) {
  off = HostIndex(a, off, E + 1, keep, "offsets");
  if (off[0] != 0 || off[E] != M) a.Fail("offsets must run from 0 to M = " + std::to_string(M));
  for (int64_t e = 0; e < E; ++e)
    if (off[e + 1] < off[e]) a.Fail("offsets decrease at expert " + std::to_string(e));
  return off;
}

void CheckK(const Args& a, int64_t k, int64_t E) {
  if (k < 1 || k > E) a.Fail("k = " + std::to_string(k) + " must be in [1, E = " + std::to_string(E) + "]");
}

// N, C, k from argument i (the permute and combine ops): N tokens of C channels, each in k >= 1
// slots, M = N * k slots in all.
struct Slots {
  int64_t N, C, k, M;
};
Slots ReadSlots(const Args& a, size_t i) {
  const int64_t N = a.Size(i, "N"), C = a.Size(i + 1, "C"), k = a.Size(i + 2, "k");
  if (k < 1) a.Fail("k must be at least 1");
  return {N, C, k, a.Mul(N, k)};
}

// M, E, O, I from argument i (the grouped and per-expert GEMMs): M rows in E groups, weights (O, I).
struct GemmDims {
  int64_t M, E, O, I;
};
GemmDims ReadGemmDims(const Args& a, size_t i) {
  return {a.Size(i, "M"), a.Size(i + 1, "E"), a.Size(i + 2, "O"), a.Size(i + 3, "I")};
}

// moeRouterForward(indices, weights, logits, N, E, k, normalize)
Napi::Value MoeRouterForward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(6, "N"), E = a.Size(7, "E"), k = a.Size(8, "k");
  CheckK(a, k, E);
  int32_t* indices = a.Ptr<int32_t>(0, "indices", a.Mul(N, k));
  float* weights = a.Ptr<float>(2, "weights", a.Mul(N, k));
  const float* logits = a.Ptr<float>(4, "logits", a.Mul(N, E));
  PG_ON(a, moe_router_forward)(indices, weights, logits, N, E, k, a.Bool(9, "normalize"));
  return info.Env().Undefined();
}

// moeRouterBackward(dlogits, dweights, weights, indices, logits, N, E, k, normalize)
Napi::Value MoeRouterBackward(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t N = a.Size(10, "N"), E = a.Size(11, "E"), k = a.Size(12, "k");
  CheckK(a, k, E);
  float* dlogits = a.Ptr<float>(0, "dlogits", a.Mul(N, E));
  const float* dweights = a.Ptr<float>(2, "dweights", a.Mul(N, k));
  const float* weights = a.Ptr<float>(4, "weights", a.Mul(N, k));
  const int32_t* indices = a.Ptr<int32_t>(6, "indices", a.Mul(N, k));
  const float* logits = a.Ptr<float>(8, "logits", a.Mul(N, E));
  CheckExperts(a, indices, N * k, E);
  PG_ON(a, moe_router_backward)(dlogits, dweights, weights, indices, logits, N, E, k, a.Bool(13, "normalize"));
  return info.Env().Undefined();
}

// moeDispatch(order, slotPos, offsets, indices, M, E)
Napi::Value MoeDispatch(const Napi::CallbackInfo& info, const Args& a) {
  const int64_t M = a.Size(8, "M"), E = a.Size(9, "E");
  if (M > INT32_MAX) a.Fail("M = " + std::to_string(M) + " slots exceed i32 positions");
  int32_t* order = a.Ptr<int32_t>(0, "order", M);
  int32_t* slot_pos = a.Ptr<int32_t>(2, "slotPos", M);
  int32_t* offsets = a.Ptr<int32_t>(4, "offsets", E + 1);
  const int32_t* indices = a.Ptr<int32_t>(6, "indices", M);
  CheckExperts(a, indices, M, E);
  if (Overlap(order, M, indices, M) || Overlap(slot_pos, M, indices, M) || Overlap(offsets, E + 1, indices, M))
    a.Fail("outputs and indices share memory");
  PG_ON(a, moe_dispatch)(order, slot_pos, offsets, indices, M, E);
  return info.Env().Undefined();
}

// moePermuteForward(xs, x, order, N, C, k)
Napi::Value MoePermuteForward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [N, C, k, M] = ReadSlots(a, 6);
  float* xs = a.Ptr<float>(0, "xs", a.Mul(M, C));
  const float* x = a.Ptr<float>(2, "x", a.Mul(N, C));
  const int32_t* order = a.Ptr<int32_t>(4, "order", M);
  CheckPermutation(a, "order", order, M);
  PG_ON(a, moe_permute_forward)(xs, x, order, M, C, k);
  return info.Env().Undefined();
}

// moePermuteBackward(dx, dxs, slotPos, N, C, k)
Napi::Value MoePermuteBackward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [N, C, k, M] = ReadSlots(a, 6);
  float* dx = a.Ptr<float>(0, "dx", a.Mul(N, C));
  const float* dxs = a.Ptr<float>(2, "dxs", a.Mul(M, C));
  const int32_t* slot_pos = a.Ptr<int32_t>(4, "slotPos", M);
  CheckPermutation(a, "slotPos", slot_pos, M);
  if (Overlap(dx, N * C, dxs, M * C)) a.Fail("dx and dxs share memory");
  PG_ON(a, moe_permute_backward)(dx, dxs, slot_pos, N, C, k);
  return info.Env().Undefined();
}

// moeGroupedGemmForward(y, xs, w, offsets, M, E, O, I)
Napi::Value MoeGroupedGemmForward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [M, E, O, I] = ReadGemmDims(a, 8);
  float* y = a.Ptr<float>(0, "y", a.Mul(M, O));
  const float* xs = a.Ptr<float>(2, "xs", a.Mul(M, I));
  const float* w = a.Ptr<float>(4, "w", a.Mul(E, a.Mul(O, I)));
  const int32_t* offsets = a.Ptr<int32_t>(6, "offsets", E + 1);
  std::vector<int32_t> keep;
  const int32_t* offsets_h = CheckOffsets(a, offsets, E, M, keep);
  if (Overlap(y, M * O, xs, M * I) || Overlap(y, M * O, w, E * O * I)) a.Fail("y shares memory with xs or w");
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    pg::cuda::moe_grouped_gemm_forward(y, xs, w, offsets, offsets_h, E, O, I);
    return info.Env().Undefined();
  }
#endif
  (void)offsets_h;
  pg::moe_grouped_gemm_forward(y, xs, w, offsets, E, O, I);
  return info.Env().Undefined();
}

// moeGroupedGemmBackward(dxs | null, dw | null, dy, xs, w, offsets, M, E, O, I)
Napi::Value MoeGroupedGemmBackward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [M, E, O, I] = ReadGemmDims(a, 12);
  float* dxs = a.OptPtr<float>(0, "dxs", a.Mul(M, I));
  float* dw = a.OptPtr<float>(2, "dw", a.Mul(E, a.Mul(O, I)));
  const float* dy = a.Ptr<float>(4, "dy", a.Mul(M, O));
  const float* xs = a.Ptr<float>(6, "xs", a.Mul(M, I));
  const float* w = a.Ptr<float>(8, "w", a.Mul(E, a.Mul(O, I)));
  const int32_t* offsets = a.Ptr<int32_t>(10, "offsets", E + 1);
  std::vector<int32_t> keep;
  const int32_t* offsets_h = CheckOffsets(a, offsets, E, M, keep);
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    pg::cuda::moe_grouped_gemm_backward(dxs, dw, dy, xs, w, offsets, offsets_h, E, O, I);
    return info.Env().Undefined();
  }
#endif
  (void)offsets_h;
  pg::moe_grouped_gemm_backward(dxs, dw, dy, xs, w, offsets, E, O, I);
  return info.Env().Undefined();
}

// Whether n elements at p share bytes with any of the list's matrices of m elements each.
template <typename A, typename B>
bool OverlapsAny(const A* p, int64_t n, const std::vector<B*>& list, int64_t m) {
  for (B* q : list)
    if (Overlap(p, n, q, m)) return true;
  return false;
}

// moeExpertsGemmForward(y, xs, w (E tensors (O, I)), offsets, M, E, O, I)
Napi::Value MoeExpertsGemmForward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [M, E, O, I] = ReadGemmDims(a, 7);
  float* y = a.Ptr<float>(0, "y", a.Mul(M, O));
  const float* xs = a.Ptr<float>(2, "xs", a.Mul(M, I));
  std::vector<const float*> w;
  a.PtrList<const float>(4, "w", E, a.Mul(O, I), w);
  const int32_t* offsets = a.Ptr<int32_t>(5, "offsets", E + 1);
  std::vector<int32_t> keep;
  const int32_t* offsets_h = CheckOffsets(a, offsets, E, M, keep);
  if (Overlap(y, M * O, xs, M * I) || OverlapsAny(y, M * O, w, O * I)) a.Fail("y shares memory with xs or w");
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    pg::cuda::moe_experts_gemm_forward(y, xs, w.data(), offsets, offsets_h, E, O, I);
    return info.Env().Undefined();
  }
#endif
  (void)offsets_h;
  pg::moe_experts_gemm_forward(y, xs, w.data(), offsets, E, O, I);
  return info.Env().Undefined();
}

// moeExpertsGemmBackward(dxs | null, dw (E tensors (O, I), written; or none), dy, xs, w (E tensors), offsets, M, E, O, I)
Napi::Value MoeExpertsGemmBackward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [M, E, O, I] = ReadGemmDims(a, 10);
  const int64_t nw = a.Mul(O, I);
  float* dxs = a.OptPtr<float>(0, "dxs", a.Mul(M, I));
  const bool want_dw = a.ListLength<float>(2, "dw") > 0;  // [] when no expert wants a gradient
  std::vector<float*> dw;
  a.PtrList<float>(2, "dw", want_dw ? E : 0, nw, dw);
  const float* dy = a.Ptr<float>(3, "dy", a.Mul(M, O));
  const float* xs = a.Ptr<float>(5, "xs", a.Mul(M, I));
  std::vector<const float*> w;
  a.PtrList<const float>(7, "w", E, nw, w);
  const int32_t* offsets = a.Ptr<int32_t>(8, "offsets", E + 1);
  std::vector<int32_t> keep;
  const int32_t* offsets_h = CheckOffsets(a, offsets, E, M, keep);
  if (dxs && (Overlap(dxs, M * I, dy, M * O) || Overlap(dxs, M * I, xs, M * I) || OverlapsAny(dxs, M * I, w, nw)))
    a.Fail("dxs shares memory with dy, xs or w");
  for (size_t e = 0; e < dw.size(); ++e) {
    if (Overlap(dw[e], nw, dy, M * O) || Overlap(dw[e], nw, xs, M * I) || OverlapsAny(dw[e], nw, w, nw) ||
        (dxs && Overlap(dw[e], nw, dxs, M * I)))
      a.Fail("dw[" + std::to_string(e) + "] shares memory with an input or dxs");
    for (size_t f = e + 1; f < dw.size(); ++f)
      if (Overlap(dw[e], nw, dw[f], nw)) a.Fail("dw[" + std::to_string(e) + "] and dw[" + std::to_string(f) + "] share memory");
  }
#if defined(PG_WITH_CUDA) && PG_WITH_CUDA
  if (OnCuda(a)) {
    pg::cuda::moe_experts_gemm_backward(dxs, want_dw ? dw.data() : nullptr, dy, xs, w.data(), offsets, offsets_h, E, O,
                                        I);
    return info.Env().Undefined();
  }
#endif
  (void)offsets_h;
  pg::moe_experts_gemm_backward(dxs, want_dw ? dw.data() : nullptr, dy, xs, w.data(), offsets, E, O, I);
  return info.Env().Undefined();
}

// moeCombineForward(out, y, weights, slotPos, N, C, k)
Napi::Value MoeCombineForward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [N, C, k, M] = ReadSlots(a, 8);
  float* out = a.Ptr<float>(0, "out", a.Mul(N, C));
  const float* y = a.Ptr<float>(2, "y", a.Mul(M, C));
  const float* weights = a.Ptr<float>(4, "weights", M);
  const int32_t* slot_pos = a.Ptr<int32_t>(6, "slotPos", M);
  CheckPermutation(a, "slotPos", slot_pos, M);
  if (Overlap(out, N * C, y, M * C)) a.Fail("out and y share memory");
  PG_ON(a, moe_combine_forward)(out, y, weights, slot_pos, N, C, k);
  return info.Env().Undefined();
}

// moeCombineBackward(dy, dweights, dout, y, weights, slotPos, N, C, k)
Napi::Value MoeCombineBackward(const Napi::CallbackInfo& info, const Args& a) {
  const auto [N, C, k, M] = ReadSlots(a, 12);
  float* dy = a.Ptr<float>(0, "dy", a.Mul(M, C));
  float* dweights = a.Ptr<float>(2, "dweights", M);
  const float* dout = a.Ptr<float>(4, "dout", a.Mul(N, C));
  const float* y = a.Ptr<float>(6, "y", a.Mul(M, C));
  const float* weights = a.Ptr<float>(8, "weights", M);
  const int32_t* slot_pos = a.Ptr<int32_t>(10, "slotPos", M);
  CheckPermutation(a, "slotPos", slot_pos, M);
  if (Overlap(dy, M * C, dout, N * C) || Overlap(dy, M * C, y, M * C)) a.Fail("dy shares memory with dout or y");
  PG_ON(a, moe_combine_backward)(dy, dweights, dout, y, weights, slot_pos, N, C, k);
  return info.Env().Undefined();
}

// Each row: the JS function, its error label, its parameters, its result, its kernel per device.
const Decl kDecls[] = {
    {DeclKind::Function, "moeRouterForward", "moe router",
     "indices: i32, weights: f32, logits: f32, N: size, E: size, k: size, normalize: boolean",
     "void", /* cpu */ MoeRouterForward, /* cuda */ PG_CUDA(MoeRouterForward)},
    {DeclKind::Function, "moeRouterBackward", "moe router backward",
     "dlogits: f32, dweights: f32, weights: f32, indices: i32, logits: f32, N: size, E: size, k: size, normalize: boolean",
     "void", /* cpu */ MoeRouterBackward, /* cuda */ PG_CUDA(MoeRouterBackward)},
    {DeclKind::Function, "moeDispatch", "moe dispatch",
     "order: i32, slotPos: i32, offsets: i32, indices: i32, M: size, E: size",
     "void", /* cpu */ MoeDispatch, /* cuda */ PG_CUDA(MoeDispatch)},
    {DeclKind::Function, "moePermuteForward", "moe permute",
     "xs: f32, x: f32, order: i32, N: size, C: size, k: size",
     "void", /* cpu */ MoePermuteForward, /* cuda */ PG_CUDA(MoePermuteForward)},
    {DeclKind::Function, "moePermuteBackward", "moe permute backward",
     "dx: f32, dxs: f32, slotPos: i32, N: size, C: size, k: size",
     "void", /* cpu */ MoePermuteBackward, /* cuda */ PG_CUDA(MoePermuteBackward)},
    {DeclKind::Function, "moeGroupedGemmForward", "moe grouped gemm",
     "y: f32, xs: f32, w: f32, offsets: i32, M: size, E: size, O: size, I: size",
     "void", /* cpu */ MoeGroupedGemmForward, /* cuda */ PG_CUDA(MoeGroupedGemmForward)},
    {DeclKind::Function, "moeGroupedGemmBackward", "moe grouped gemm backward",
     "dxs: f32 | null, dw: f32 | null, dy: f32, xs: f32, w: f32, offsets: i32, M: size, E: size, O: size, I: size",
     "void", /* cpu */ MoeGroupedGemmBackward, /* cuda */ PG_CUDA(MoeGroupedGemmBackward)},
    {DeclKind::Function, "moeExpertsGemmForward", "moe experts gemm",
     "y: f32, xs: f32, w: f32[], offsets: i32, M: size, E: size, O: size, I: size",
     "void", /* cpu */ MoeExpertsGemmForward, /* cuda */ PG_CUDA(MoeExpertsGemmForward)},
    {DeclKind::Function, "moeExpertsGemmBackward", "moe experts gemm backward",
     "dxs: f32 | null, dw: f32[], dy: f32, xs: f32, w: f32[], offsets: i32, M: size, E: size, O: size, I: size",
     "void", /* cpu */ MoeExpertsGemmBackward, /* cuda */ PG_CUDA(MoeExpertsGemmBackward)},
    {DeclKind::Function, "moeCombineForward", "moe combine",
     "out: f32, y: f32, weights: f32, slotPos: i32, N: size, C: size, k: size",
     "void", /* cpu */ MoeCombineForward, /* cuda */ PG_CUDA(MoeCombineForward)},
    {DeclKind::Function, "moeCombineBackward", "moe combine backward",
     "dy: f32, dweights: f32, dout: f32, y: f32, weights: f32, slotPos: i32, N: size, C: size, k: size",
     "void", /* cpu */ MoeCombineBackward, /* cuda */ PG_CUDA(MoeCombineBackward)},
};

}  // namespace

void RegisterMoe(Napi::Env env, Napi::Object exports) { Define(env, exports, kDecls); }

}  // namespace pgnode
